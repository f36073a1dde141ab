//! Tensors at the ONNX boundary: f32 or f16 as each session reports, converted with `half`.

use half::f16;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

use crate::engine::error::{EngineError, Result};

/// The float type of one model tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
}

impl Precision {
    /// Reads the element type a session reports for an input or output.
    pub fn of(session: &Session, name: &str, input: bool) -> Result<Precision> {
        let outlets = if input {
            session.inputs()
        } else {
            session.outputs()
        };
        let outlet = outlets
            .iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| EngineError::Inference(format!("no tensor `{name}`")))?;
        match outlet.dtype() {
            ValueType::Tensor {
                ty: TensorElementType::Float32,
                ..
            } => Ok(Precision::F32),
            ValueType::Tensor {
                ty: TensorElementType::Float16,
                ..
            } => Ok(Precision::F16),
            other => Err(EngineError::Inference(format!(
                "tensor `{name}` has type {other:?}; expected float32 or float16"
            ))),
        }
    }
}

/// Host data for one input, already in the session's element type.
#[derive(Debug, Clone)]
pub enum HostTensor {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl HostTensor {
    /// Converts `f32` data to the given precision (no copy for f32).
    pub fn from_f32(data: Vec<f32>, precision: Precision) -> HostTensor {
        match precision {
            Precision::F32 => HostTensor::F32(data),
            Precision::F16 => HostTensor::F16(data.iter().map(|&v| f16::from_f32(v)).collect()),
        }
    }

    /// A zero-filled buffer of `len` elements.
    pub fn zeros(len: usize, precision: Precision) -> HostTensor {
        match precision {
            Precision::F32 => HostTensor::F32(vec![0.0; len]),
            Precision::F16 => HostTensor::F16(vec![f16::ZERO; len]),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HostTensor::F32(v) => v.len(),
            HostTensor::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A borrowed ONNX Runtime input of the given shape over this buffer (no copy).
    pub fn input(&self, shape: Vec<i64>) -> Result<SessionInputValue<'_>> {
        Ok(match self {
            HostTensor::F32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
            HostTensor::F16(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        })
    }
}

/// One output tensor as `f32`: ONNX Runtime's own buffer when the model emits `f32` (read in
/// place, never copied: a 2 100 × 639 score tensor is 5.4 MB), else converted from `f16`.
#[derive(Debug)]
pub enum OutputF32 {
    Ort(DynValue),
    Owned(Vec<f32>),
}

impl OutputF32 {
    pub fn as_slice(&self) -> &[f32] {
        match self {
            OutputF32::Ort(v) => v
                .try_extract_tensor::<f32>()
                .map(|(_, data)| data)
                .expect("checked to be an f32 tensor when it was taken"),
            OutputF32::Owned(v) => v,
        }
    }

    pub fn into_vec(self) -> Vec<f32> {
        match self {
            OutputF32::Ort(_) => self.as_slice().to_vec(),
            OutputF32::Owned(v) => v,
        }
    }
}

/// Takes an `f32` or `f16` output tensor with its shape.
pub fn output_f32(value: DynValue, name: &str) -> Result<(Vec<usize>, OutputF32)> {
    let bad = |e: ort::Error| EngineError::Inference(format!("output `{name}`: {e}"));
    if let Ok((shape, _)) = value.try_extract_tensor::<f32>() {
        return Ok((dims(shape), OutputF32::Ort(value)));
    }
    let (shape, data) = value.try_extract_tensor::<f16>().map_err(bad)?;
    Ok((
        dims(shape),
        OutputF32::Owned(data.iter().map(|v| v.to_f32()).collect()),
    ))
}

fn dims(shape: &ort::value::Shape) -> Vec<usize> {
    shape.iter().map(|&d| d.max(0) as usize).collect()
}

# dosod: build the binary, then ship it with the ONNX Runtime library from the onnxruntime wheel.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# CMake and NASM build the SIMD libjpeg-turbo that the turbojpeg crate bundles.
RUN apt-get update && apt-get install -y --no-install-recommends cmake nasm && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN cargo build --release --locked

FROM python:3.11-slim-bookworm AS models
WORKDIR /src
COPY python python
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir -r python/requirements/setup.txt \
 && /venv/bin/pip install --no-cache-dir --no-deps -r python/requirements/setup-nodeps.txt \
 && /venv/bin/pip install --no-cache-dir --no-deps -e ./python \
 && /venv/bin/python -m dosod_tools.fixtures.make_test_bundles --out /models/generated \
 && /venv/bin/python -m dosod_tools.textenc.build_text_encoder minilm --out /models/encoders/all-MiniLM-L6-v2 \
 && cp /venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0 /libonnxruntime.so.1.32.0

FROM debian:bookworm-slim
# ffmpeg decodes camera streams ([[streams]], docs/streams.md).
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /srv/dosod dosod
WORKDIR /srv/dosod
COPY --from=build /src/target/release/dosod /usr/local/bin/dosod
COPY --from=models /libonnxruntime.so.1.32.0 /usr/local/lib/libonnxruntime.so.1.32.0
COPY --from=models /models models
COPY configs configs
COPY models models
COPY tests/fixtures/images samples
ENV DOSOD_ORT_LIB=/usr/local/lib/libonnxruntime.so.1.32.0 \
    DOSOD_LOG_FORMAT=json \
    DOSOD_LOG=info
USER dosod
EXPOSE 8080
ENTRYPOINT ["dosod"]
CMD ["serve", "--host", "0.0.0.0"]

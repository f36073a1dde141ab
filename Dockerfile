# dosod: build the binary, then ship it with the ONNX Runtime library from the onnxruntime wheel.
#
# Every base image is a build argument (defaults: the usual public images), so the image can be
# built where those cannot be pulled. ARTIFACTS=source (default) compiles the binary and makes the
# generated models in the build stages below; ARTIFACTS=prebuilt takes the binary, the ONNX
# Runtime library and the text encoders from the context's .container/ instead
# (scripts/container_context.sh; the container test does this on a locally made Debian base).
# Needs BuildKit (the default builder of current Docker; DOCKER_BUILDKIT=1 on Docker 20.10).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG ARTIFACTS=source

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# CMake and NASM build the SIMD libjpeg-turbo that the turbojpeg crate bundles.
RUN apt-get update && apt-get install -y --no-install-recommends cmake nasm && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN cargo build --release --locked

FROM ${PYTHON_IMAGE} AS models
WORKDIR /src
COPY python python
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir -r python/requirements/setup.txt \
 && /venv/bin/pip install --no-cache-dir --no-deps -r python/requirements/setup-nodeps.txt \
 && /venv/bin/pip install --no-cache-dir --no-deps -e ./python \
 && /venv/bin/python -m dosod_tools.fixtures.make_test_bundles --out /models/generated \
 && /venv/bin/python -m dosod_tools.textenc.build_text_encoder minilm --out /models/encoders/all-MiniLM-L6-v2 \
 && cp /venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0 /libonnxruntime.so.1.32.0

# What the runtime image takes, laid out as it will be: from the stages above...
FROM scratch AS source
COPY --from=build /src/target/release/dosod /out/usr/local/bin/dosod
COPY --from=models /libonnxruntime.so.1.32.0 /out/usr/local/lib/libonnxruntime.so.1.32.0
COPY --from=models /models /out/srv/dosod/models

# ...or from the build context (scripts/container_context.sh), built on this machine.
FROM scratch AS prebuilt
COPY .container/ /out/

FROM ${ARTIFACTS} AS artifacts

FROM ${RUNTIME_IMAGE}
# ffmpeg decodes camera streams ([[streams]], docs/streams.md).
ARG RUNTIME_PACKAGES="ffmpeg ca-certificates"
# The service user owns only data/ (named vocabularies; a volume): everything else is read-only
# to it, so the image also runs with a read-only root file system (deploy/kubernetes/).
RUN if [ -n "$RUNTIME_PACKAGES" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 dosod \
 && useradd --system --uid 10001 --gid 10001 --home-dir /srv/dosod --no-create-home dosod \
 && mkdir -p /srv/dosod/data \
 && chown dosod:dosod /srv/dosod/data
WORKDIR /srv/dosod
COPY --from=artifacts /out/ /
COPY configs configs
COPY models models
COPY tests/fixtures/images samples
ENV DOSOD_ORT_LIB=/usr/local/lib/libonnxruntime.so.1.32.0 \
    DOSOD_LOG_FORMAT=json \
    DOSOD_LOG=info
VOLUME /srv/dosod/data
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["dosod"]
CMD ["serve", "--host", "0.0.0.0"]

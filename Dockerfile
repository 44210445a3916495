# One image for the svmhpo command line and its workers.
#   docker build -t svmhpo .                                          # CPU build of PyTorch (default)
#   docker build -t svmhpo:gpu --build-arg TORCH_VARIANT=cu126 .      # a CUDA build for GPU workers
#   docker build --build-arg PYTHON_IMAGE=mirror.example/python:3.11-slim .   # base image from a mirror
# Offline (air-gapped) builds: ./dev/wheelhouse fills wheelhouse/ with every wheel the image needs
# (PyTorch included), and the build installs from there with --no-index; with no wheels there it
# installs from the PyTorch index and PyPI.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY wheelhouse/ /wheelhouse/
# PyTorch first (the largest layer, the least often changed), then the dependencies, then svmhpo.
RUN python -m venv /opt/svmhpo \
    && if ls /wheelhouse/*.whl >/dev/null 2>&1; then \
         /opt/svmhpo/bin/pip install --no-index --find-links /wheelhouse "torch==${TORCH_VERSION}"; \
       else \
         /opt/svmhpo/bin/pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "torch==${TORCH_VERSION}"; \
       fi
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && if ls /wheelhouse/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /wheelhouse; fi \
    && /opt/svmhpo/bin/pip install "$@" -r /tmp/requirements.txt
COPY README.md ./
COPY svmhpo/ svmhpo/
RUN if ls /wheelhouse/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /wheelhouse; fi \
    && /opt/svmhpo/bin/pip install "$@" --no-deps .

# The runtime image: the base, a non-root user, and the environment built above. Everything small
# comes first and the environment last, so that a change to svmhpo rebuilds one layer.
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/svmhpo/bin:$PATH \
    SVMHPO_HOME=/data \
    SVMHPO_CACHE=/data/cache
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin svmhpo \
    && mkdir -p /data /app \
    && chown svmhpo:svmhpo /data
WORKDIR /app
COPY svmhpo/studies/ studies/
VOLUME ["/data"]
ENTRYPOINT ["svmhpo"]
CMD ["--help"]
USER 10001:10001
COPY --from=build /opt/svmhpo /opt/svmhpo

# One image for the svmhpo command line and its workers.
#   docker build -t svmhpo .                                  # CPU build of PyTorch (default)
#   docker build -t svmhpo:gpu --build-arg TORCH_VARIANT=cu126 .   # a CUDA build for GPU workers
FROM python:3.11-slim

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SVMHPO_HOME=/data \
    SVMHPO_CACHE=/data/cache

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin svmhpo \
    && mkdir -p /data /app \
    && chown svmhpo:svmhpo /data

WORKDIR /app

# Layers from the least to the most often changed: PyTorch, then the dependencies, then the source.
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY svmhpo/ svmhpo/
COPY studies/ studies/
RUN pip install --no-deps .

USER 10001:10001
VOLUME ["/data"]
ENTRYPOINT ["svmhpo"]
CMD ["--help"]

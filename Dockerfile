# One image for the svmhpo command line and its workers.
#   docker build -t svmhpo .                                          # CPU build of PyTorch (default)
#   docker build -t svmhpo:gpu --build-arg TORCH_VARIANT=cu126 .      # a CUDA build for GPU workers
#   docker build --build-arg PYTHON_IMAGE=mirror.example/python:3.11-slim .   # base image from a mirror
# Offline (air-gapped) builds: ./dev/wheelhouse fills wheelhouse/ with every wheel the image needs
# (PyTorch included), and the build installs from there with --no-index; with no wheels there it
# installs from the PyTorch index and PyPI.
#
# Few layers, on purpose: Docker's vfs storage driver (hosts without overlayfs, this project's CI)
# stores every layer as a full copy of the filesystem, so the eight-layer build stage this file
# once had took 11.5 GB of disk where these three take about 3 GB. The build context is only what
# the install needs (.dockerignore lists it), copied in one step.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY . /src/
# PyTorch first (from the wheelhouse or the PyTorch index, so that pip never picks a CUDA build
# for a CPU image), then svmhpo's dependencies, then svmhpo itself. What the runtime image takes is
# gathered under /out: the environment (built at its final path, /opt/svmhpo, then moved) and the
# shipped study configs. Then out goes what no svmhpo process ever loads (measured: the modules a
# run, a worker and the dashboard import): PyTorch's C++ test binaries, headers and protoc, and
# pip and setuptools, about 220 MB of the environment's 1.4 GB, copied once per container under vfs.
RUN python -m venv /opt/svmhpo \
    && if ls /src/wheelhouse/*.whl >/dev/null 2>&1; then \
         /opt/svmhpo/bin/pip install --no-index --find-links /src/wheelhouse "torch==${TORCH_VERSION}" \
         && /opt/svmhpo/bin/pip install --no-index --find-links /src/wheelhouse /src; \
       else \
         /opt/svmhpo/bin/pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "torch==${TORCH_VERSION}" \
         && /opt/svmhpo/bin/pip install /src; \
       fi \
    && site=$(/opt/svmhpo/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
    && rm -rf "$site/torch/test" "$site/torch/include" "$site"/torch/bin/*Test "$site"/torch/bin/test_* \
              "$site"/torch/bin/protoc* \
    && /opt/svmhpo/bin/python -m pip uninstall -y -q pip setuptools \
    && mkdir -p /out/opt /out/app \
    && mv /opt/svmhpo /out/opt/svmhpo \
    && cp -r /src/svmhpo/studies /out/app/studies

# The runtime image: the base, a non-root user, its settings, and last the environment built above,
# in one layer. Last, because under vfs every step after it (even a setting such as USER) would
# copy and compare the whole 1.6 GB filesystem again: about two minutes each here.
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/svmhpo/bin:$PATH \
    SVMHPO_HOME=/data \
    SVMHPO_CACHE=/data/cache
WORKDIR /app
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin svmhpo \
    && mkdir -p /data \
    && chown svmhpo:svmhpo /data
VOLUME ["/data"]
ENTRYPOINT ["svmhpo"]
CMD ["--help"]
USER 10001:10001
COPY --from=build /out/ /

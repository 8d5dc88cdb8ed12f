# relaygate's container image, built from this repository (the build context is its root):
#
#   docker build -t relaygate:0.1.0 .          # or: make image (builds, then smoke-tests it)
#   docker run --rm -p 8787:8787 -v "$PWD/relaygate.yaml:/etc/relaygate/relaygate.yaml:ro" relaygate:0.1.0
#
# Two stages: `build` installs relaygate and its runtime dependencies (no dev extras) into a
# virtual environment; the final image copies only that environment onto the same pinned
# Python base and runs as an unprivileged user (uid 10001), so it works with
# runAsNonRoot and readOnlyRootFilesystem (bytecode is compiled at build time; relaygate
# writes only under $TMPDIR, an emptyDir at /tmp on Kubernetes: deploy/README.md).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/relaygate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relaygate ./relaygate
RUN /opt/relaygate/bin/pip install . \
    && /opt/relaygate/bin/pip uninstall --yes pip setuptools \
    && /opt/relaygate/bin/relaygate --version

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/relaygate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
RUN groupadd --system --gid 10001 relaygate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin relaygate
COPY --from=build /opt/relaygate /opt/relaygate
USER 10001:10001
WORKDIR /
EXPOSE 8787
ENTRYPOINT ["relaygate"]
CMD ["serve", "--config", "/etc/relaygate/relaygate.yaml", "--host", "0.0.0.0", "--port", "8787"]

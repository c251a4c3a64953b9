# synthbids BIDS App image: docker build -t synthbids . (see docs/hpc.md)
#
# Build arguments
#   BASE_IMAGE       Debian-like image; python3 and python3-venv are installed if missing
#                    (CI builds from a local debootstrap base, localhost/debian-base:bookworm)
#   TORCH_SPEC       what pip installs as PyTorch: a requirement (torch==2.13.0) or the path of
#                    a wheel inside the build (put it in docker/wheels/: /tmp/docker/wheels/<file>)
#   TORCH_INDEX_URL  index for TORCH_SPEC (default: PyTorch's CPU wheels; empty: PyPI only).
#                    PyPI's default torch pulls GBs of CUDA libraries; for GPUs use e.g.
#                    https://download.pytorch.org/whl/cu126
#   VERSION          version recorded for synthbids (the build context has no .git)
#   TEMPLATES        TemplateFlow templates to bake in for --output-spaces, as the option takes
#                    them (e.g. "MNI152NLin2009cAsym:res-2 MNIColin27"; default: none), fetched
#                    at build time into /opt/templateflow, the image's TEMPLATEFLOW_HOME (or bind
#                    a host cache there: -v ~/.cache/templateflow:/opt/templateflow:ro)
# Extra CA certificates for a TLS-intercepting proxy: put *.crt files in docker/certs/; they
# are used by pip in the builder stage only and do not reach the final image.
#
# The final image runs as the unprivileged user "synthbids" and writes nothing outside /tmp and
# the folders given on the command line, so it works with a read-only root file system
# (docker run --read-only, Singularity/Apptainer).

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS base
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null \
        || [ ! -f /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# ---------------------------------------------------------------- builder: a virtual environment
FROM base AS builder
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG VERSION=0+unknown
COPY docker/ /tmp/docker/
RUN for crt in /tmp/docker/certs/*.crt; do \
      if [ -f "$crt" ]; then cat "$crt" >> /etc/ssl/certs/ca-certificates.crt; fi; \
    done
# pip settings live in the environment's own pip.conf (the system CA bundle, extra certificates
# included, also for pip's isolated build environments)
RUN python3 -m venv /opt/synthbids \
    && printf '[global]\ncert = %s\nno-cache-dir = true\ndisable-pip-version-check = true\n' \
      /etc/ssl/certs/ca-certificates.crt > /opt/synthbids/pip.conf
RUN /opt/synthbids/bin/pip install \
      ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple} \
      "$TORCH_SPEC"
COPY pyproject.toml README.md /tmp/src/
COPY synthbids /tmp/src/synthbids
COPY workflows /tmp/src/workflows
COPY interfaces /tmp/src/interfaces
RUN SETUPTOOLS_SCM_PRETEND_VERSION_FOR_SYNTHBIDS="$VERSION" /opt/synthbids/bin/pip install /tmp/src
RUN /opt/synthbids/bin/synthbids --version
ARG TEMPLATES=
RUN mkdir -p /opt/templateflow && if [ -n "$TEMPLATES" ]; then TEMPLATEFLOW_HOME=/opt/templateflow /opt/synthbids/bin/python -c 'import sys; from synthbids.bids.templates import prefetch, resolve_templates; prefetch(sys.argv[1:]); resolve_templates(sys.argv[1:])' $TEMPLATES; fi

# ---------------------------------------------------------------- runtime
FROM base AS runtime
ARG VERSION=0+unknown
LABEL org.opencontainers.image.title="synthbids" \
      org.opencontainers.image.description="SynthStrip and SynthSeg in PyTorch as a BIDS App" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/synthbids/synthbids"
RUN useradd --create-home --home-dir /home/synthbids --uid 1000 --user-group \
      --shell /bin/sh synthbids
COPY --from=builder /opt/synthbids /opt/synthbids
COPY --from=builder /opt/templateflow /opt/templateflow
# HOME may be read-only: every cache goes to /tmp (a tmpfs under --read-only, the host's /tmp
# under Singularity). synthbids never downloads anything at run time; the default weights are
# the ones packaged in synthbids/data/weights (synthbids-models list shows what is found).
ENV PATH=/opt/synthbids/bin:${PATH} \
    HOME=/home/synthbids \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    NUMBA_CACHE_DIR=/tmp/.cache/numba \
    NIPYPE_NO_ET=1 \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER synthbids
WORKDIR /tmp
ENTRYPOINT ["synthbids"]
CMD ["--help"]

# gexplain image: the project with its pins, for `gexplain run` on Kubernetes (CronJob, KubeRay).
#
#   docker build -t gexplain:0.1.0 .                                        # CPU (default)
#   docker build -t gexplain:0.1.0-cuda --build-arg TORCH_VARIANT=cuda .    # CUDA build of torch
#
# The same image runs the Ray head, the Ray workers, the Dask scheduler/workers and the driver,
# so every node has the same gexplain, torch and Ray. RAY_VERSION must equal `rayVersion` in
# cluster/deploy/*.yaml (tests/test_cluster_deploy.py checks both against pyproject.toml).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

# cpu: torch's CPU wheels (small); cuda: the default PyPI wheels of torch, built with CUDA.
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG RAY_VERSION=2.60.0
# Object-store support: s3 (s3fs), gcs (gcsfs); empty for none.
ARG EXTRAS=s3,gcs

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# KubeRay runs `ray start` in the container and expects a non-root user with a home directory.
RUN useradd --create-home --uid 1000 --shell /bin/bash ray

WORKDIR /opt/gexplain
COPY pyproject.toml setup.py README.md ./
COPY gexplain ./gexplain
COPY storage ./storage
COPY cluster ./cluster
COPY pipelines ./pipelines

RUN if [ "${TORCH_VARIANT}" = "cpu" ]; then \
        pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu; \
    elif [ "${TORCH_VARIANT}" = "cuda" ]; then \
        pip install "torch==${TORCH_VERSION}"; \
    else \
        echo "TORCH_VARIANT must be cpu or cuda (got ${TORCH_VARIANT})" >&2; exit 2; \
    fi \
    && pip install ".${EXTRAS:+[${EXTRAS}]}" "ray[default]==${RAY_VERSION}" \
    && gexplain --help > /dev/null

USER 1000
WORKDIR /home/ray
CMD ["gexplain", "--help"]

# Dockerfile: smelt on a CUDA development image. The same install script as a workstation
# (scripts/install-deps.sh) provides the Debian/Ubuntu packages, so the two cannot drift.
# Build: docker build -t smelt .   Run: docker run --gpus all -v $PWD/store:/store smelt run /smelt/recipes/quickstart.yaml --store /store
FROM nvidia/cuda:13.0.1-devel-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /smelt
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN scripts/build.sh && ln -s /smelt/build/smelt /usr/local/bin/smelt

# OpenMPI refuses to run as root without these; containers usually run as root.
ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ENTRYPOINT ["smelt"]
CMD ["--help"]

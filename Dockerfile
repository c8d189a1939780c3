# ScenePS image: the four executables (ps-server, worker, coordinator, psctl) on PATH, built with the
# README's recipe: tools/install-deps.sh (the Debian packages) + swift build -c release. The same image runs
# every process of cluster/k8s/ (each manifest names its command).
#
#   docker build -t sceneps:latest .
#   docker run --rm sceneps:latest psctl --help
# The compiler this project is built and tested with (swift --version: 6.3.1); the slim variant runs it.
ARG SWIFT_IMAGE=swift:6.3-bookworm

FROM ${SWIFT_IMAGE} AS build
WORKDIR /src
COPY tools/install-deps.sh tools/install-deps.sh
RUN tools/install-deps.sh
COPY . .
RUN swift build -c release \
 && mkdir -p /out \
 && for p in ps-server worker coordinator psctl; do cp "$(swift build -c release --show-bin-path)/$p" /out/; done

FROM ${SWIFT_IMAGE}-slim
# The same package list as the build (one recipe): the runtime libraries come with it.
COPY tools/install-deps.sh /opt/sceneps/tools/install-deps.sh
RUN /opt/sceneps/tools/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
COPY cluster/default.yaml /etc/sceneps/default.yaml
# One BLAS thread per process unless the config says otherwise (training.compute_threads).
ENV OPENBLAS_NUM_THREADS=1
CMD ["psctl", "--help"]

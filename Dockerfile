# syntax=docker/dockerfile:1
#
# csrguard's container image: one static binary on distroless, run as the
# non-root user 65532. Build it with an engine:
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v0.1.0 -t ghcr.io/csrguard/csrguard:v0.1.0 .
#
# or without one: `make image` builds the same image (same path, user,
# entrypoint and command; on an empty base with our own passwd, group and CA
# roots, see test/ociimage) into _output/csrguard-image.tar, and `make
# release` builds the released multi-arch index that way. The packaging
# tests inspect both.
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY internal/ internal/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X github.com/csrguard/csrguard/internal/buildinfo.Version=${VERSION}" \
      -o /out/csrguard ./cmd/csrguard

# static:nonroot has CA certificates, /etc/passwd with nonroot (65532) and no
# shell. It is not pinned by digest here: its digest changes with every
# distroless rebuild and none could be read from an authoritative source when
# this was written. The released image does not use this file (it has no base
# image to pin); if you build with it, pin the base yourself:
# FROM gcr.io/distroless/static:nonroot@sha256:<crane digest gcr.io/distroless/static:nonroot>
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="csrguard" \
      org.opencontainers.image.description="Safe approver and monitor of kubelet serving certificates" \
      org.opencontainers.image.source="https://github.com/csrguard/csrguard" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/csrguard /csrguard
USER 65532:65532
ENTRYPOINT ["/csrguard"]
CMD ["controller"]

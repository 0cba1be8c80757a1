# syntax=docker/dockerfile:1
#
# csrguard's container image: one static binary on distroless, run as the
# non-root user 65532. Build it with an engine:
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v0.1.0 -t ghcr.io/csrguard/csrguard:v0.1.0 .
#
# or without one: `make image` builds the same image (same path, user,
# entrypoint and command, on an empty base) into _output/csrguard-image.tar
# with test/cmd/ociimage, and the packaging tests inspect it.
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
# shell. Release builds should pin it by digest.
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

# syntax=docker/dockerfile:1
# Build: docker build -t switchboard .
# Run:   docker run -p 8080:8080 -v switchboard-data:/data -e AUTH_MODE=open switchboard
#
# The static binary alone on distroless's static base (no shell, no libc),
# run as its nonroot user, uid 65532, with the embedded store in /data,
# which that user owns. A named volume (as above, or the anonymous one that
# VOLUME makes) starts as a copy of the image's /data, owner included; a
# bind mount keeps its host directory's owner, so `chown 65532:65532` that
# directory first. Fly mounts its volume on /data; Cloud Run has no disk
# and runs on Postgres (DATABASE_URL). e2e/deploy_test.go builds the binary
# with this file's go build line and runs it as uid 65532 alone in an empty
# directory, and checks the lines below against the server's defaults.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/switchboard .
# The store's directory, made here because the final image has no shell to
# make it, and owned by the final image's user.
RUN mkdir -p /out/data && chown 65532:65532 /out/data && chmod 0755 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchboard /switchboard
COPY --from=build --chown=65532:65532 /out/data /data
ENV PORT=8080 DATA_DIR=/data
VOLUME /data
EXPOSE 8080
# Numeric, so that a platform can tell that it is not root without the
# image's /etc/passwd (Kubernetes' runAsNonRoot) and knows whom to mount
# a volume for.
USER 65532:65532
# CMD, not ENTRYPOINT, so that a platform's command (Fly's release_command
# "/switchboard migrate") replaces it whole.
CMD ["/switchboard"]

# Build: docker build -t switchboard .
# Run:   docker run -p 8080:8080 -v sbdata:/data -e AUTH_MODE=open switchboard
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /switchboard .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /switchboard /switchboard
ENV PORT=8080 DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER nonroot
# CMD, not ENTRYPOINT, so that a platform's command (Fly's release_command
# "/switchboard migrate") replaces it whole.
CMD ["/switchboard"]

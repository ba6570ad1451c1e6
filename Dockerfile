# The operator image: one static binary on a minimal base with CA certificates.
# Build: docker build -t ghcr.io/salad-sd/salad-sd-operator:0.1.0 .
# Built without default features: the operator image carries no SaladCloud simulator (`salad-sd sim`).
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p salad-sd-cli --no-default-features \
 && cp target/x86_64-unknown-linux-musl/release/salad-sd /salad-sd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /salad-sd /usr/local/bin/salad-sd
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/salad-sd"]
CMD ["operator"]

# infer-bot: slim, non-root, pinned base, with the helm and terraform binaries that deploy and
# provision run. Each binary is the official release for the build's TARGETARCH, checked against
# the sha256 published with that release (get.helm.sh/…tar.gz.sha256sum, terraform_…_SHA256SUMS)
# before it is unpacked. HELM_VERSION is the one scripts/setup installs for the tests.

FROM python:3.11.11-slim-bookworm AS tools
ARG TARGETARCH
ARG HELM_VERSION=v4.1.4
ARG HELM_SHA256_AMD64=70b2c30a19da4db264dfd68c8a3664e05093a361cefd89572ffb36f8abfa3d09
ARG HELM_SHA256_ARM64=13d03672be289045d2ff00e4e345d61de1c6f21c1257a45955a30e8ae036d8f1
ARG TERRAFORM_VERSION=1.11.4
ARG TERRAFORM_SHA256_AMD64=1ce994251c00281d6845f0f268637ba50c0005657eb3cf096b92f753b42ef4dc
ARG TERRAFORM_SHA256_ARM64=a43d1d0da9b9bab214a8305a39db0e40869572594ccf50c416a7756499143633
WORKDIR /download
# The slim base has no curl or unzip; Python's urllib and zipfile do both jobs without an apt layer.
RUN set -eu; \
    arch="${TARGETARCH:-amd64}"; \
    case "$arch" in \
      amd64) helm_sha256="$HELM_SHA256_AMD64"; terraform_sha256="$TERRAFORM_SHA256_AMD64" ;; \
      arm64) helm_sha256="$HELM_SHA256_ARM64"; terraform_sha256="$TERRAFORM_SHA256_ARM64" ;; \
      *) echo "no pinned helm/terraform checksums for TARGETARCH=$arch" >&2; exit 1 ;; \
    esac; \
    fetch() { python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$1" "$2"; }; \
    fetch "https://get.helm.sh/helm-${HELM_VERSION}-linux-${arch}.tar.gz" helm.tar.gz; \
    echo "${helm_sha256}  helm.tar.gz" | sha256sum -c -; \
    fetch "https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}_linux_${arch}.zip" terraform.zip; \
    echo "${terraform_sha256}  terraform.zip" | sha256sum -c -; \
    mkdir -p /tools/bin; \
    tar -xzf helm.tar.gz "linux-${arch}/helm"; \
    install -m 0755 "linux-${arch}/helm" /tools/bin/helm; \
    python -c 'import zipfile; zipfile.ZipFile("terraform.zip").extract("terraform", "/tools/bin")'; \
    chmod 0755 /tools/bin/terraform; \
    rm -rf /download/*

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 infer-bot \
 && useradd --system --uid 10001 --gid infer-bot --home-dir /var/lib/infer-bot --create-home infer-bot
COPY --from=tools /tools/bin/helm /tools/bin/terraform /usr/local/bin/
# A binary that does not run on this base fails the build, not the first deploy.
RUN helm version --template '{{.Version}}' && CHECKPOINT_DISABLE=1 terraform version

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY ops ./ops
# The runtime only: the sandbox extra (kmock's emulator) is for `console --sandbox` and the tests.
RUN pip install ".[postgres]"

USER 10001:10001
WORKDIR /var/lib/infer-bot
ENV PORT=3000 INFER_BOT_DATABASE_URL=sqlite:////var/lib/infer-bot/infer-bot.sqlite3 CHECKPOINT_DISABLE=1
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2)"
ENTRYPOINT ["infer-bot"]
CMD ["serve"]

#!/bin/sh
# Writes stacks/langfuse/.env from .env.example with random secrets and a fresh project key pair.
# Usage: stacks/langfuse/init-env.sh [ADMIN_EMAIL]   (refuses to overwrite an existing .env)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/.env"
if [ -e "$out" ]; then
    echo "$out exists; remove it first to make a new one (its secrets protect Langfuse's data)." >&2
    exit 1
fi
email=${1:-admin@example.com}
rand() { python3 -c "import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))" "$1"; }
password=$(rand 12)
umask 077
sed -e "s|^NEXTAUTH_SECRET=$|NEXTAUTH_SECRET=$(rand 32)|" \
    -e "s|^SALT=$|SALT=$(rand 32)|" \
    -e "s|^ENCRYPTION_KEY=$|ENCRYPTION_KEY=$(rand 32)|" \
    -e "s|^POSTGRES_PASSWORD=$|POSTGRES_PASSWORD=$(rand 24)|" \
    -e "s|^CLICKHOUSE_PASSWORD=$|CLICKHOUSE_PASSWORD=$(rand 24)|" \
    -e "s|^REDIS_AUTH=$|REDIS_AUTH=$(rand 24)|" \
    -e "s|^MINIO_ROOT_PASSWORD=$|MINIO_ROOT_PASSWORD=$(rand 24)|" \
    -e "s|^LANGFUSE_INIT_PROJECT_PUBLIC_KEY=$|LANGFUSE_INIT_PROJECT_PUBLIC_KEY=pk-lf-$(rand 16)|" \
    -e "s|^LANGFUSE_INIT_PROJECT_SECRET_KEY=$|LANGFUSE_INIT_PROJECT_SECRET_KEY=sk-lf-$(rand 16)|" \
    -e "s|^LANGFUSE_INIT_USER_EMAIL=$|LANGFUSE_INIT_USER_EMAIL=$email|" \
    -e "s|^LANGFUSE_INIT_USER_PASSWORD=$|LANGFUSE_INIT_USER_PASSWORD=$password|" \
    "$here/.env.example" > "$out"
echo "Wrote $out (mode 600). Langfuse sign-in: $email / $password" >&2

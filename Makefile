# The two commands of the README. Each sets up everything it needs on a fresh machine.
.PHONY: run test lint

run:
	@bash .ci/setup.sh run
	@.venv/bin/openlive certs .certs >/dev/null
	@echo "Connect with base_url=https://localhost:8443 and SSL_CERT_FILE=$$(pwd)/.certs/ca.pem (see README)."
	.venv/bin/openlive serve --tls-cert .certs/server.pem --tls-key .certs/server.key

test:
	@bash .ci/setup.sh test
	$(MAKE) lint
	.venv/bin/pytest -q -ra

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

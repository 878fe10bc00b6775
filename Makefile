# Shortcuts for the scripts that do the work; each target runs what CI runs. The README's
# commands work without make. `make` alone lists the targets.

.PHONY: help ci test race fmt tidy vet staticcheck vulncheck fuzz tools bench bench-go

help: ## list the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

ci: ## every CI check, in CI's order (bash .ci/run)
	bash .ci/run

test: ## the test suite, as the README runs it (go test ./...)
	eval "$$(.ci/tools env)" && go test ./...

race: ## the test suite under the race detector, as CI runs it
	bash .ci/run services test

fmt: ## fail if gofmt would change a file
	bash .ci/run gofmt

tidy: ## fail if go mod tidy would change go.mod or go.sum
	bash .ci/run tidy

vet: ## go vet
	bash .ci/run vet

staticcheck: ## staticcheck at the pinned version
	bash .ci/run staticcheck

vulncheck: ## govulncheck against the pinned offline vulnerability database
	bash .ci/run vulncheck

fuzz: ## every Fuzz target for FUZZTIME (10s) each
	bash .ci/run fuzz

tools: ## build the pinned tools into the cache and print their versions
	.ci/tools install && .ci/tools versions

bench: ## CPU per request of Moat, Caddy and nginx (bench/run; ROUNDS=5)
	bash bench/run

bench-go: ## the Go benchmarks of internal packages
	go test -run '^$$' -bench . -benchmem ./internal/...

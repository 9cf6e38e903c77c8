# kez-chat. `make dev` runs the whole stack on this machine; `make test` runs
# the tests. Both need only Go (the module proxy provides everything else).

GO        ?= go
BIN       := bin
TOOLS_MOD := tools.mod
FUZZTIME  ?= 30s
# Packages with fuzz targets, for `make fuzz`.
FUZZ_PKGS := . ./webfinger ./mnemonic ./message ./sigchain ./sigserver

.PHONY: all build tools test vet fmt-check bench fuzz dev clean

all: build

## build: static binaries of our commands into bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

## tools: nats-server and the nats CLI, built from the versions pinned in tools.mod
tools: $(BIN)/nats-server $(BIN)/nats

$(BIN)/nats-server $(BIN)/nats: $(TOOLS_MOD)
	CGO_ENABLED=0 $(GO) build -modfile=$(TOOLS_MOD) -o $(BIN)/ github.com/nats-io/nats-server/v2 github.com/nats-io/natscli/nats

## test: vet, formatting, and every test with the race detector (integration tests included)
test: vet fmt-check
	$(GO) test -race -tags integration -timeout 9m ./...

vet:
	$(GO) vet -tags integration ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## bench: throughput figures as ratios to baselines measured in the same run
bench:
	$(GO) test -tags bench -run '^TestBench' -v -count=1 -timeout 60m ./bench/

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
		[ -d $$pkg ] || continue; \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## dev: nats-server (deploy/nats.conf) and our servers on 127.0.0.1, logs on the terminal; Ctrl-C stops all
dev: build tools
	./deploy/dev.sh

clean:
	rm -rf $(BIN) .dev

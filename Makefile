# kez-chat. `make dev` runs the whole stack on this machine; `make test` runs
# the tests. Both need only Go (the module proxy provides everything else).

GO        ?= go
BIN       := bin
TOOLS_MOD := tools.mod
FUZZTIME  ?= 30s
# Packages with fuzz targets, for `make fuzz`.
FUZZ_PKGS := . ./client ./cmd/kez-chat/display ./webfinger ./callout ./mnemonic ./message ./sigchain ./sigserver ./filecrypt ./blob ./p2p ./share ./registry ./strictjson ./streams ./integrity

.PHONY: all build tools test vet fmt-check bench chaos fuzz dev clean release

all: build

## build: static binaries of our commands into bin/
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -o $(BIN)/ ./cmd/...

## release: static binaries of HEAD for linux and darwin on amd64 and arm64 into dist/, with SHA256SUMS (deploy/release.sh)
release:
	GO=$(GO) ./deploy/release.sh dist

## tools: nats-server and the nats CLI, built from the versions pinned in tools.mod
tools: $(BIN)/nats-server $(BIN)/nats

$(BIN)/nats-server $(BIN)/nats: $(TOOLS_MOD)
	CGO_ENABLED=0 $(GO) build -modfile=$(TOOLS_MOD) -o $(BIN)/ github.com/nats-io/nats-server/v2 github.com/nats-io/natscli/nats

## test: vet, formatting, and every test with the race detector (integration tests included)
test: vet fmt-check
	$(GO) test -race -tags integration -timeout 9m ./...

vet:
	$(GO) vet -tags integration,bench,docker,chaos ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## bench: throughput figures as ratios to baselines measured in the same run
bench:
	$(GO) test -tags bench -run '^TestBench' -v -count=1 -timeout 60m ./bench/

## chaos: fault runs against the stack as processes (chaos/, docs/operations.md "Faults"): a node frozen 30 s and one killed on a 3-node cluster, kill -9 of a chat-server replica, of a sig-server replica (three times) and of a single-node nats-server under 16-way load, clock skew, a full tmpfs store (root only); about 6 minutes
chaos: build tools
	$(GO) test -tags chaos -run '^TestChaos' -v -count=1 -timeout 20m ./chaos/

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
		[ -d $$pkg ] || continue; \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
		done; \
	done

## dev: nats-server (nats/nats.conf) and our servers on 127.0.0.1, logs on the terminal; Ctrl-C stops all
dev: build tools
	./deploy/dev.sh

clean:
	rm -rf $(BIN) .dev dist

# --- Containers (docs/operations.md) ----------------------------------------
# The nats image tag matches the nats-server version pinned in tools.mod.
NATS_TAG  := $(patsubst v%,%,$(word 2,$(shell grep -m1 'nats-io/nats-server/v2 v' $(TOOLS_MOD))))
KEZ_TAG   ?= dev

.PHONY: images compose-install compose-v2 compose-test test-docker

# kez-relay joins the images once cmd/kez-relay exists.
IMAGE_CMDS := kez-chat-server kez-sig-server $(if $(wildcard cmd/kez-relay/*.go),kez-relay)

## images: kez-chat-server:$(KEZ_TAG), kez-sig-server:$(KEZ_TAG), kez-relay:$(KEZ_TAG) (deploy/Dockerfile) and a stand-in nats:$(NATS_TAG) built from tools.mod (deploy/nats.Dockerfile)
images:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -o $(BIN)/ $(addprefix ./cmd/,$(IMAGE_CMDS))
	CGO_ENABLED=0 $(GO) build -trimpath -modfile=$(TOOLS_MOD) -o $(BIN)/ github.com/nats-io/nats-server/v2
	rm -rf $(BIN)/image $(BIN)/nats-image
	mkdir -p $(BIN)/image/keys $(BIN)/image/data $(BIN)/image/out/nats $(BIN)/image/out/chat-server $(BIN)/image/out/sig-server $(BIN)/nats-image
	ln -f $(addprefix $(BIN)/,$(IMAGE_CMDS)) $(BIN)/image/
	ln -f $(BIN)/nats-server $(BIN)/nats-image/
	@set -e; for c in $(IMAGE_CMDS); do \
		echo "docker build --target $${c#kez-} -t $$c:$(KEZ_TAG)"; \
		docker build -q -f deploy/Dockerfile --target $${c#kez-} -t $$c:$(KEZ_TAG) $(BIN)/image; \
	done
	docker build -q -f deploy/nats.Dockerfile -t nats:$(NATS_TAG) $(BIN)/nats-image

## compose-install: Docker Compose v2 (`docker compose`) built from its Go module into ~/.docker/cli-plugins
compose-install:
	./deploy/install-compose.sh

# compose-v2: `make compose-install` unless some `docker compose` v2 works already.
compose-v2:
	@docker compose version >/dev/null 2>&1 || $(MAKE) compose-install

## compose-test: deploy/docker-compose.yml from freshly built images, two users registered and chatting with bin/kez-chat, torn down (needs Docker; CI runs it)
compose-test: images compose-v2
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/kez-chat
	COMPOSE_TEST_RELAY=$(if $(filter kez-relay,$(IMAGE_CMDS)),1) ./deploy/compose-test.sh

## test-docker: compose-test, then the compose stack, bring-your-own NATS and the 3-node cluster in real containers (deploy/deploytest)
test-docker: compose-test
	$(GO) test -tags docker -count=1 -v -timeout 20m ./deploy/deploytest/

# --- Load test (docs/capacity.md) -------------------------------------------
LOADTEST_ARGS ?= --users 1000 --duration 2m --user-jwt-ttl 1m

.PHONY: loadtest

## loadtest: 1,000 simulated users against a stack spawned from bin/ for 2 minutes, then the capacity table (not part of `make test`; LOADTEST_ARGS overrides)
loadtest: tools
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/kez-chat-server ./cmd/kez-sig-server ./cmd/kez-load
	$(BIN)/kez-load --spawn --bin $(BIN) $(LOADTEST_ARGS)

# cubed — the README's two commands are `make run` and `make test`.
GO       ?= go
BIN      := bin/cubed
DATA_DIR ?= .data
HTTP     ?= 127.0.0.1:8080
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

.PHONY: build run test test-race bench fmt vet lint clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cubed

# The service on its embedded defaults: embedded store, in-process Kafka broker fed by the
# generator, the demo model.
run: build
	$(BIN) run --config configs/demo.yaml --data-dir $(DATA_DIR)/demo --http $(HTTP) --dev

# The whole suite: vet, every test (the oracle tests read ../shared/data), then the race
# detector over the concurrent packages.
test: vet
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -short -timeout 20m ./aggregate/ ./dictionary/ ./bitmapstate/ ./pipeline/ ./source/ ./sink/ ./web/

test-race:
	$(GO) test -count=1 -race -timeout 30m ./...

# Benchmarks (events per CPU-second, allocations per event); see README for the peer run.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 ./aggregate/ ./pipeline/
	$(GO) test -run '^$$' -bench . -benchmem ./bitmapstate/ ./sink/ ./source/

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(BIN) lint configs/*.yaml 2>/dev/null || $(GO) run ./cmd/cubed lint configs/*.yaml

clean:
	rm -rf bin $(DATA_DIR)

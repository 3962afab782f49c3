# cubed — the README's two commands are `make run` and `make test`.
GO       ?= go
BIN      := bin/cubed
DATA_DIR ?= .data
HTTP     ?= 127.0.0.1:8080
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

.PHONY: build run test test-race bench bench-clickhouse fmt vet lint clean ui test-ui

# The web UI (web/ui): npm ci when package-lock.json changed, vite build when a source changed.
# The Go binary embeds web/ui/dist (see web/ui.go).
UI_DIR  := web/ui
UI_SRC  := $(shell find $(UI_DIR)/src -type f 2>/dev/null) $(UI_DIR)/index.html $(UI_DIR)/vite.config.js

ui: $(UI_DIR)/dist/index.html

$(UI_DIR)/node_modules/.ci-stamp: $(UI_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make: npm is missing: the web UI in $(UI_DIR) is built with Node.js 20+ and npm (Debian: apt-get install nodejs npm), then embedded by go build" >&2; exit 1; }
	cd $(UI_DIR) && npm ci --no-audit --no-fund
	touch $@

$(UI_DIR)/dist/index.html: $(UI_DIR)/node_modules/.ci-stamp $(UI_SRC)
	cd $(UI_DIR) && npm run build

build: ui
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cubed

# The service on its embedded defaults: embedded store, in-process Kafka broker fed by the
# generator, the demo model.
run: build
	$(BIN) run --config configs/demo.yaml --data-dir $(DATA_DIR)/demo --http $(HTTP) --dev

# The whole suite: vet, every test (the oracle tests read ../shared/data), then the race
# detector over the concurrent packages.
test: vet ui
	scripts/ensure-clickhouse.sh
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -short -timeout 20m ./aggregate/ ./dictionary/ ./bitmapstate/ ./pipeline/ ./source/ ./sink/ ./web/
	$(MAKE) test-ui

# Browser tests of the web UI: Debian's chromium (installed when missing) driven by
# playwright-core against bin/cubed replaying configs/wikiticker.yaml and the daily cube of
# configs/online_retail.yaml.
test-ui: build
	scripts/ensure-chromium.sh
	cd $(UI_DIR) && CUBED_BIN=../../$(BIN) npm test

test-race:
	$(GO) test -count=1 -race -timeout 30m ./...

# Benchmarks (events per CPU-second, allocations per event); see README for the peer run.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 ./aggregate/ ./pipeline/
	$(GO) test -run '^$$' -bench . -benchmem ./bitmapstate/ ./dictionary/ ./sink/ ./source/

# End to end with real processes: Kafka (cubed broker) → cubed run → a private clickhouse-server,
# in events per CPU-second against ../shared/bench/run_peer.sh on the same 2M events, then the
# event-to-queryable latency at 80% of that throughput (about 3 minutes).
bench-clickhouse:
	scripts/ensure-clickhouse.sh
	$(GO) test -run '^$$' -bench KafkaToClickHouse -benchtime 1x -count 1 -timeout 30m ./cmd/cubed/

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) run ./cmd/cubed lint configs/*.yaml

clean:
	rm -rf bin $(DATA_DIR)

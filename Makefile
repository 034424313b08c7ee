# The two set-up commands of the README: `make example` and `make test`.
GO ?= go

.PHONY: build fixtures example deps test fuzz vscode bench clean

build:
	$(GO) build -o rseqdbg ./cmd/rseqdbg

fixtures:
	$(MAKE) -C tests/fixtures

# Step through a critical section of a bundled example, headless. Needs Go
# and gcc only: rseqdbg and the one fixture. One thread, so no other thread
# hits the breakpoint while this one steps and the crossing is always shown.
# tests/example_test.go runs this target and checks the README's sample.
example: build
	@$(MAKE) --no-print-directory -s -C tests/fixtures build/full_tables
	./rseqdbg run -ex 'set pin on' -ex 'break inc_full' -ex continue -ex 'stepi 12' -ex bt \
	  -ex 'delete' --continue -- tests/fixtures/build/full_tables 1 1000

# The Debian packages the tests need (gdb, gdbserver, lldb, clang, lld,
# qemu-user, chromium, ...), when missing: apt-get as root or through sudo.
deps:
	bash tests/install-deps.sh

# deps first, so that fixtures can use clang and lld.
test: deps
	$(MAKE) build fixtures
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	$(MAKE) fuzz
	$(MAKE) vscode

# The VS Code extension: lint, DebugClient tests against the Go binary, the
# platform .vsix with the binary inside, then a real VS Code (code-server in
# headless Chromium) debugging a fixture through it.
vscode: build fixtures
	cd vscode-extension && npm ci --no-audit --no-fund && npm run lint && npm test && npm run package
	bash tests/vscode-e2e/run.sh

# Short fuzz runs of the input decoders: they must not panic. The budget is
# a count of executions, not a duration: with a wall-clock -fuzztime, Go
# 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when a starved worker misses the deadline (go.dev/issue/75804).
FUZZTIME ?= 30000x
FUZZ = regions:FuzzLoadELF regions:FuzzDecodeRegion linkmap:FuzzLinkMap x86:FuzzQuickDecode \
       gdbproto/wire:FuzzReader gdbproto/wire:FuzzStopReply gdbproto/wire:FuzzVCont gdbproto:FuzzDispatch gdbproto/wire:FuzzHexDecode gdbproto/wire:FuzzBinaryEscape \
       gdbproto/wire:FuzzTargetDescription target/remote:FuzzGReply target/remote:FuzzThreadLists \
       dap:FuzzRequest eval:FuzzExpression eval:FuzzDWARF \
       unwind:FuzzSynthesize unwind:FuzzSynthesizeModel unwind:FuzzAddImage agentexpr:FuzzEval
fuzz:
	@set -e; for t in $(FUZZ); do pkg=$${t%%:*}; fn=$${t#*:}; \
	  echo "fuzz $$pkg $$fn"; $(GO) test ./$$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); done

bench: build fixtures
	$(GO) test -run '^$$' -bench . -benchtime 1x ./tests/ ./regions/ ./stepper/

clean:
	rm -f rseqdbg
	$(MAKE) -C tests/fixtures clean

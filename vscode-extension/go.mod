// The VS Code extension is TypeScript. This file only keeps its
// node_modules (npm packages may ship Go sources, as flatted does) out of
// the rseqdbg module, so go vet ./... and go test ./... never build them.
module github.com/rseqdbg/rseqdbg/vscode-extension

go 1.26.0

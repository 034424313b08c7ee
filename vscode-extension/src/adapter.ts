// Where the rseqdbg executable is: the rseqdbg.path setting, else the binary
// bundled in the platform-specific .vsix at bin/rseqdbg. No vscode import.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface ResolvedBinary {
  path: string;
  from: 'setting' | 'bundled';
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Expands a leading ~ and ${workspaceFolder} / ${userHome} in the setting. */
export function expandSetting(value: string, workspaceFolder?: string): string {
  let v = value.trim();
  if (v === '~' || v.startsWith('~/')) {
    v = path.join(os.homedir(), v.slice(1));
  }
  v = v.replace(/\$\{userHome\}/g, os.homedir());
  if (workspaceFolder) {
    v = v.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  }
  return v;
}

/** Finds the binary or throws an Error that says what to do. */
export function resolveBinary(extensionPath: string, setting: string | undefined, workspaceFolder?: string): ResolvedBinary {
  if (setting && setting.trim() !== '') {
    const p = expandSetting(setting, workspaceFolder);
    const abs = path.isAbsolute(p) ? p : path.resolve(workspaceFolder ?? process.cwd(), p);
    if (!isExecutable(abs)) {
      throw new Error(`rseqdbg.path is set to "${setting}" but ${abs} is not an executable file.`);
    }
    return { path: abs, from: 'setting' };
  }
  const bundled = path.join(extensionPath, 'bin', 'rseqdbg');
  if (!isExecutable(bundled) && fs.existsSync(bundled)) {
    // An unpacker that dropped the mode bits.
    try {
      fs.chmodSync(bundled, 0o755);
    } catch {
      // reported below
    }
  }
  if (isExecutable(bundled)) {
    return { path: bundled, from: 'bundled' };
  }
  throw new Error(
    'No rseqdbg executable: this installation of the extension has none bundled (bin/rseqdbg, only in the linux-x64 package). ' +
      'Build it with `go build -o rseqdbg ./cmd/rseqdbg` and set rseqdbg.path to it.',
  );
}

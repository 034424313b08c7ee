// Process listing for ${command:pickProcess}, read from /proc. No vscode import.
import * as fs from 'fs';

export interface ProcessInfo {
  pid: number;
  comm: string;
  cmdline: string;
}

export function listProcesses(procDir = '/proc'): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(procDir);
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^[0-9]+$/.test(n)) {
      continue;
    }
    const pid = Number(n);
    if (pid === process.pid) {
      continue;
    }
    try {
      const comm = fs.readFileSync(`${procDir}/${n}/comm`, 'utf8').trim();
      const cmdline = fs.readFileSync(`${procDir}/${n}/cmdline`, 'utf8').split('\0').filter((s) => s.length > 0).join(' ');
      if (cmdline === '') {
        continue; // kernel threads and zombies
      }
      out.push({ pid, comm, cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => b.pid - a.pid);
}

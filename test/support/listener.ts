import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'

/*
 * Who listens on a port: the Linux /proc view. A port picked free and
 * released can be taken by another server started at the same moment; a
 * harness that only checks "something answers on the port" may then talk to
 * the wrong process. These functions tell whether the process group we
 * started owns the listening socket.
 */

function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(file)) continue
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols.length < 10) continue
      const localPort = Number.parseInt(cols[1]!.split(':')[1]!, 16)
      if (localPort === port && cols[3] === '0A') inodes.add(cols[9]!)
    }
  }
  return inodes
}

function groupOf(pid: string): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(rest[2])
  } catch {
    return undefined
  }
}

/** The processes holding a listening socket on `port`. Undefined where /proc cannot tell. */
export function listeningPids(port: number): number[] | undefined {
  if (!existsSync('/proc/net/tcp')) return undefined
  const inodes = listeningInodes(port)
  const pids: number[] = []
  if (inodes.size === 0) return pids
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue
    }
    const holds = fds.some((fd) => {
      try {
        const m = readlinkSync(`/proc/${pid}/fd/${fd}`).match(/^socket:\[(\d+)\]$/)
        return m !== null && inodes.has(m[1]!)
      } catch {
        return false
      }
    })
    if (holds) pids.push(Number(pid))
  }
  return pids
}

/** Whether a process in process group `pgid` holds the listening socket on `port`. Undefined where /proc cannot tell. */
export function groupListensOn(pgid: number, port: number): boolean | undefined {
  return listeningPids(port)?.some((pid) => groupOf(String(pid)) === pgid)
}

// A worker host that scripts/chaos.ts can cut off from the database server: a Linux network
// namespace joined to this host by a veth pair on a private /30. The server listens on this host's
// end; a worker started inside reaches it only through the pair, so taking this host's end down
// cuts that worker off while every other process keeps its connections. The worker's end stays up
// without a carrier, so its packets vanish as behind a failed switch: its TCP connections stall
// rather than fail. Needs root and iproute2's `ip`.
//
// Names carry the controller's pid (`reflow-chaos-<pid>`, veth `rfc<pid>h`/`rfc<pid>n`), so that
// removeIsolatedLeftovers() can tell an earlier run's orphans, whose controller is gone, from a
// concurrent run's.
import { execFileSync } from "node:child_process";
import process from "node:process";
import { alive } from "../tests/support/postgres_server.ts";

const NAMESPACE_PREFIX = "reflow-chaos-";
const VETH_PREFIX = "rfc";

/** A network namespace behind a veth pair. */
export interface IsolatedHost {
  /** The address of this host's end, for the server to listen on. */
  readonly hostAddress: string;
  /** The address of the namespace's end, the clients the server must admit. */
  readonly peerAddress: string;
  /** The command line that runs `command` with `args` inside the namespace. */
  wrap(command: string, args: readonly string[]): { command: string; args: string[] };
  /** Takes this host's end of the link down: nothing passes until restore(). */
  cut(): void;
  /** Brings the link back up. */
  restore(): void;
  /** Kills whatever still runs inside, and removes the namespace and the pair. Never throws. */
  remove(): void;
}

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Kills the processes inside namespace `name` and deletes it (its veth end, and so the pair, with it). */
function deleteNamespace(name: string): void {
  try {
    for (const pid of ip("netns", "pids", name).split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    ip("netns", "delete", name);
  } catch {
    // Gone already.
  }
}

/**
 * Removes the namespaces and veth pairs of earlier chaos runs whose controller is gone (a SIGKILL
 * or a crash skipped their cleanup). Does nothing where `ip` cannot run.
 */
export function removeIsolatedLeftovers(): void {
  try {
    for (const line of ip("netns", "list").split("\n")) {
      const name = line.split(" ")[0]!;
      const owner = new RegExp(`^${NAMESPACE_PREFIX}(\\d+)$`).exec(name)?.[1];
      if (owner !== undefined && !alive(Number(owner))) deleteNamespace(name);
    }
    for (const line of ip("-o", "link", "show").split("\n")) {
      const [, name, owner] = new RegExp(`^\\d+: (${VETH_PREFIX}(\\d+)h)[@:]`).exec(line) ?? [];
      if (name !== undefined && !alive(Number(owner))) ip("link", "delete", name);
    }
  } catch {
    // No `ip`, or not allowed: nothing of ours can be left either.
  }
}

/**
 * Creates the namespace and its veth pair for this process, or says why it cannot.
 *
 * @returns The host, or a one-line reason (not root, no `ip`, namespaces not permitted).
 */
export function createIsolatedHost(): IsolatedHost | string {
  if (process.platform !== "linux") return `network namespaces are Linux's, not ${process.platform}'s`;
  if (process.getuid?.() !== 0) return "creating a network namespace needs root";
  const pid = process.pid;
  const name = `${NAMESPACE_PREFIX}${pid}`;
  const [hostEnd, peerEnd] = [`${VETH_PREFIX}${pid}h`, `${VETH_PREFIX}${pid}n`];
  // A /30 of 10.213.0.0/16 chosen by the pid: concurrent runs rarely share one.
  const base = (pid % 16_384) * 4;
  const prefix = `10.213.${base >> 8}.`;
  const [hostAddress, peerAddress] = [`${prefix}${(base & 255) + 1}`, `${prefix}${(base & 255) + 2}`];
  try {
    ip("netns", "add", name);
  } catch (error) {
    const { code, stderr } = error as { code?: string; stderr?: string };
    return code === "ENOENT"
      ? "iproute2's `ip` is not installed"
      : `ip netns add failed: ${String(stderr ?? error).trim().split("\n")[0]}`;
  }
  const remove = () => {
    deleteNamespace(name);
    // Deleting one end of the pair deletes the other, wherever it is; the namespace may outlive its
    // deletion for a moment while its killed processes exit.
    try {
      ip("link", "delete", hostEnd);
    } catch {
      // Never created, or gone with the namespace.
    }
  };
  try {
    ip("link", "add", hostEnd, "type", "veth", "peer", "name", peerEnd);
    ip("link", "set", peerEnd, "netns", name);
    ip("addr", "add", `${hostAddress}/30`, "dev", hostEnd);
    ip("link", "set", hostEnd, "up");
    ip("-n", name, "addr", "add", `${peerAddress}/30`, "dev", peerEnd);
    ip("-n", name, "link", "set", peerEnd, "up");
    ip("-n", name, "link", "set", "lo", "up");
  } catch (error) {
    remove();
    return `veth pair failed: ${
      String((error as { stderr?: string }).stderr ?? error).trim().split("\n")[0]
    }`;
  }
  return {
    hostAddress,
    peerAddress,
    wrap: (command, args) => ({ command: "ip", args: ["netns", "exec", name, command, ...args] }),
    cut: () => void ip("link", "set", hostEnd, "down"),
    restore: () => void ip("link", "set", hostEnd, "up"),
    remove,
  };
}

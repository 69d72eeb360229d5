import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP relay between a process and a server (PostgreSQL here) that a test can cut: every open connection is
 * dropped and new ones are closed at once until `restore()`, as a database restart or a network fault does.
 */
export class TcpProxy {
  private readonly open = new Set<Socket>();
  private cut = false;
  private dropAt: number | undefined;
  private holdAt: number | undefined;
  refused = 0;
  /** Bytes relayed from clients to the server so far. */
  sent = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => {
      if (!proxy || proxy.cut) {
        if (proxy) proxy.refused++;
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, targetHost);
      const pair = proxy;
      for (const [a, b] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        pair.open.add(a);
        if (a === client) {
          a.on('data', (chunk: Buffer) => {
            pair.sent += chunk.byteLength;
            if (pair.dropAt !== undefined && pair.sent >= pair.dropAt) {
              pair.dropAt = undefined;
              for (const socket of pair.open) socket.destroy();
            }
            if (pair.holdAt !== undefined && pair.sent >= pair.holdAt) {
              // Hold the connection open but relay nothing more from the client, as a stalled network does.
              pair.holdAt = undefined;
              a.unpipe(b);
              a.pause();
            }
          });
        }
        a.pipe(b);
        a.on('error', () => b.destroy());
        a.on('close', () => {
          pair.open.delete(a);
          b.destroy();
        });
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('the proxy has no port');
    proxy = new TcpProxy(server, address.port);
    return proxy;
  }

  /** Drops every connection through the proxy and refuses new ones. */
  drop(): void {
    this.cut = true;
    for (const socket of this.open) socket.destroy();
  }

  /** Drops every connection once `bytes` more have gone from clients to the server (new ones are still taken). */
  dropAfter(bytes: number): void {
    this.dropAt = this.sent + bytes;
  }

  /** Stops relaying what clients send once `bytes` more have gone through; connections stay open until dropped. */
  holdAfter(bytes: number): void {
    this.holdAt = this.sent + bytes;
  }

  /** Drops every open connection; new ones are still taken. */
  dropConnections(): void {
    for (const socket of this.open) socket.destroy();
  }

  restore(): void {
    this.cut = false;
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP relay between a process and a server (PostgreSQL here) that a test can cut: every open connection is
 * dropped and new ones are closed at once until `restore()`, as a database restart or a network fault does.
 */
export class TcpProxy {
  private readonly open = new Set<Socket>();
  private cut = false;
  refused = 0;

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

  restore(): void {
    this.cut = false;
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

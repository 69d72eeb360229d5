/** `federa-coordinator --help`: every flag, the environment variable behind it, and its default. */
export const COORDINATOR_USAGE = `usage: federa-coordinator --kit DIR [options]   (node coordinator/dist/main.js)

Runs the coordinator: the gRPC federation service for sites (mutual TLS from the kit) and the REST API.
Flags win over environment variables, which win over defaults.

  --kit DIR                 coordinator kit from \`federa provision\` (FEDERA_KIT_DIR); required unless --insecure
  --insecure                plaintext gRPC, sites named by metadata: local development only (FEDERA_INSECURE=1)
  --host ADDR               where sites reach gRPC, and REST unless --http-host (FEDERA_HOST; 127.0.0.1)
  --http-host ADDR          where the REST API listens; keep it on loopback behind a TLS proxy (FEDERA_HTTP_HOST)
  --grpc-port N             gRPC port, 0 for a free one (FEDERA_GRPC_PORT; 50051)
  --http-port N             REST port, 0 for a free one (FEDERA_HTTP_PORT; 8080)
  --data-dir DIR            embedded database and blobs (FEDERA_DATA_DIR; .federa/coordinator)
  --database-url URL        PostgreSQL instead of the embedded database (DATABASE_URL)
  --rate-limit N            REST requests per client per minute (FEDERA_RATE_LIMIT; 1200)
  --trust-proxy SPEC        whose X-Forwarded-For names the client (FEDERA_TRUST_PROXY; loopback)
  --site-away SECONDS       a site silent this long is away, not assigned (FEDERA_SITE_AWAY_SECONDS; 45)
  --reconnect-grace SECONDS how long an open round waits for a site that left (FEDERA_RECONNECT_GRACE_SECONDS; 60)
  --aggregation-threads N   threads adding encrypted updates (FEDERA_AGGREGATION_THREADS; the cores, at most 16)
  --ready-file FILE         written with the bound ports once both listeners accept connections
  --help, --version

Exit codes: 0 stopped cleanly (SIGINT or SIGTERM); 1 failed at start-up or while running (the log says why);
2 a flag, an environment variable or the kit is wrong (the message says which).
Logs are JSON lines on stderr (FEDERA_LOG_LEVEL=debug for more; trace, debug, info, warn, error, fatal, silent). The first admin token comes from
\`federa token create --role admin\`; see the README ("Running the pieces yourself").
`;

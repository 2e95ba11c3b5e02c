// The reference fleet: `npm start` at the repository root runs this with `shoal up`.
import { defineFleet } from 'shoal/fleet';

export default defineFleet({
  name: 'orders',
  resources: {
    redis: true,
    // When no PostgreSQL can be found or started, the demo falls back to embedded PGlite.
    postgres: { allowPglite: true },
  },
  services: {
    api: {
      command: ['node', 'dist/server.js'],
      replicas: 3,
      port: 8080,
      dependsOn: ['redis', 'postgres'],
      drainDelay: '1s',
      maxBodySize: '1mb',
      env: {
        LOG_LEVEL: 'info',
        // Demo token; set your own in production (at least 16 characters).
        SHOAL_ADMIN_TOKEN: process.env.SHOAL_ADMIN_TOKEN ?? 'orders-demo-admin-token',
      },
    },
  },
});

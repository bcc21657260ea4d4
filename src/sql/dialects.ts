/**
 * The dialects the core writes, by the name a driver declares.
 *
 * @module
 */

import type { Dialect } from "./dialect.ts";
import type { SqlDialect } from "./driver.ts";
import { postgresDialect } from "./postgres/dialect.ts";
import { sqliteDialect } from "./sqlite/dialect.ts";

/** Every dialect, by name. */
export const DIALECTS: Readonly<Record<SqlDialect, Dialect>> = {
  sqlite: sqliteDialect,
  postgres: postgresDialect,
};

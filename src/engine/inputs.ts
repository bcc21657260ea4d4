/**
 * The checks every engine entry point makes on what a caller passes in: the workflow name, a
 * value validated by its schema and encoded for storage, and an optional key.
 *
 * @module
 */

import { WorkflowNotFoundError } from "../errors.ts";
import { checkName } from "../names.ts";
import type { EncodedValue } from "../storage/adapter.ts";
import { encodeValue } from "../storage/codec.ts";
import type { StandardSchemaV1 } from "../standard_schema.ts";
import { validateWithSchema } from "../workflow/validate.ts";
import type { AnyWorkflow } from "../workflow/workflow.ts";

/**
 * The registered workflow called `name`.
 *
 * @throws {WorkflowNotFoundError} When there is none.
 */
export function registeredWorkflow(workflows: ReadonlyMap<string, AnyWorkflow>, name: string): AnyWorkflow {
  const workflow = workflows.get(name);
  if (workflow === undefined) throw new WorkflowNotFoundError(name);
  return workflow;
}

/**
 * A value as it will be stored: validated by `schema` (null: taken as is), then encoded.
 *
 * @throws {ValidationError} When the schema rejects it.
 * @throws {SerializationError} When the validated value cannot be stored.
 */
export async function storableValue(
  schema: StandardSchemaV1 | null,
  value: unknown,
  what: string,
): Promise<{ readonly value: unknown; readonly encoded: EncodedValue }> {
  const validated = schema === null ? value : await validateWithSchema(schema, value, what);
  return { value: validated, encoded: encodeValue(validated) };
}

/**
 * Checks an optional key option (an idempotency key, a schedule key): stored keys follow the
 * naming rule of `src/names.ts`.
 *
 * @throws {ConfigError} On field `field` when it is given but not a non-empty string, or breaks
 *   the naming rule (`MalformedNameError`).
 */
export function optionalKey(value: unknown, field: string): string | undefined {
  return value === undefined ? undefined : checkName(value, field);
}

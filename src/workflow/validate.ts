import { ValidationError } from "../errors.ts";
import type { StandardSchemaResult, StandardSchemaV1 } from "../standard_schema.ts";
import { isPromiseLike } from "../async.ts";

/**
 * Validates a value with a Standard Schema, returning the schema's (possibly transformed) output.
 * Synchronous schemas stay synchronous, so the common case costs no extra promise.
 *
 * @throws {ValidationError} With the schema's issues.
 */
export function validateWithSchema(
  schema: StandardSchemaV1,
  value: unknown,
  what: string,
): unknown | Promise<unknown> {
  const result = schema["~standard"].validate(value);
  return isPromiseLike(result) ? result.then((settled) => unwrap(settled, what)) : unwrap(result, what);
}

function unwrap(result: StandardSchemaResult<unknown>, what: string): unknown {
  if (result.issues !== undefined) throw new ValidationError(`Invalid ${what}`, result.issues);
  return result.value;
}

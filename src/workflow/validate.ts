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
  let result: ReturnType<StandardSchemaV1["~standard"]["validate"]>;
  try {
    result = schema["~standard"].validate(value);
  } catch (error) {
    throw schemaThrew(error, what);
  }
  if (!isPromiseLike(result)) return unwrap(result, what);
  return Promise.resolve(result).then((settled) => unwrap(settled, what), (error) => {
    throw schemaThrew(error, what);
  });
}

/** A schema that throws (or rejects) instead of returning issues: its failure, as a ValidationError. */
function schemaThrew(error: unknown, what: string): ValidationError {
  const message = `the schema's validate() threw: ${error instanceof Error ? error.message : String(error)}`;
  return new ValidationError(`Invalid ${what}`, [{ message }], { cause: error });
}

function unwrap(result: StandardSchemaResult<unknown>, what: string): unknown {
  if (result.issues !== undefined) throw new ValidationError(`Invalid ${what}`, result.issues);
  return result.value;
}

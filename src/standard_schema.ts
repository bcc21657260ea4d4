/**
 * The Standard Schema v1 interface (https://standardschema.dev), declared here structurally
 * so that Reflow has no runtime dependency and accepts zod, valibot, arktype or any other
 * schema library that implements it.
 *
 * @module
 */

/**
 * A schema that validates a value of type `Input` into a value of type `Output`.
 *
 * @example A hand-written schema
 * ```ts
 * import type { StandardSchemaV1 } from "@reflow/core";
 *
 * const positive: StandardSchemaV1<number> = {
 *   "~standard": {
 *     version: 1,
 *     vendor: "example",
 *     validate: (value) =>
 *       typeof value === "number" && value > 0 ? { value } : { issues: [{ message: "Expected a positive number" }] },
 *   },
 * };
 * ```
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The Standard Schema properties. */
  readonly "~standard": StandardSchemaProps<Input, Output>;
}

/** The properties every Standard Schema exposes under `~standard`. */
export interface StandardSchemaProps<Input = unknown, Output = Input> {
  /** The version of the Standard Schema specification: 1. */
  readonly version: 1;
  /** The name of the schema library. */
  readonly vendor: string;
  /** Validates a value; may be synchronous or asynchronous. */
  readonly validate: (value: unknown) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
  /** Carries the input and output types; never present at run time. */
  readonly types?: StandardSchemaTypes<Input, Output> | undefined;
}

/** The result of a validation: a value, or issues. */
export type StandardSchemaResult<Output> = StandardSchemaSuccess<Output> | StandardSchemaFailure;

/** A successful validation. */
export interface StandardSchemaSuccess<Output> {
  /** The validated (and possibly transformed) value. */
  readonly value: Output;
  /** Absent on success. */
  readonly issues?: undefined;
}

/** A failed validation. */
export interface StandardSchemaFailure {
  /** What is wrong. */
  readonly issues: ReadonlyArray<StandardSchemaIssue>;
}

/** One problem found by a schema. */
export interface StandardSchemaIssue {
  /** What is wrong. */
  readonly message: string;
  /** Where: keys, or `{ key }` segments. */
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** The phantom types of a schema. */
export interface StandardSchemaTypes<Input = unknown, Output = Input> {
  /** The type a schema accepts. */
  readonly input: Input;
  /** The type a schema produces. */
  readonly output: Output;
}

/** The type a schema accepts. */
export type InferSchemaInput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["input"];

/** The type a schema produces. */
export type InferSchemaOutput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["output"];

import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { decodeValue, deepFreeze, encodeValue, MAX_VALUE_BYTES, valuesEqual } from "../src/storage/codec.ts";
import { SerializationError } from "../src/errors.ts";
import { malformedName } from "../src/names.ts";

function roundTrip(value: unknown): unknown {
  const text = encodeValue(value);
  JSON.parse(text); // always valid JSON
  return decodeValue(text);
}

function assertRejects(value: unknown, message: string, path: string): void {
  assert.throws(
    () => encodeValue(value),
    (error: unknown) => {
      assert.ok(error instanceof SerializationError, `expected SerializationError, got ${String(error)}`);
      assert.equal(error.code, "SERIALIZATION");
      assert.equal(error.path, path);
      assert.equal(error.message, `${message} at ${path}`);
      return true;
    },
  );
}

function assertDecodeRejects(text: string, path: string, pattern: RegExp): void {
  assert.throws(
    () => decodeValue(text),
    (error: unknown) => {
      assert.ok(error instanceof SerializationError);
      assert.equal(error.code, "SERIALIZATION");
      assert.equal(error.path, path);
      assert.match(error.message, pattern);
      return true;
    },
  );
}

describe("encodeValue / decodeValue round trips", () => {
  test("plain JSON values are stored as plain JSON and come back equal", () => {
    const value = {
      id: 42,
      name: "Ada",
      active: true,
      score: -1.5,
      tags: ["a", "b"],
      nested: { deep: [null, { x: 0 }] },
    };
    assert.equal(encodeValue(value), JSON.stringify(value));
    assert.deepEqual(roundTrip(value), value);
  });

  test("top-level primitives, null, undefined and Dates round-trip", () => {
    for (const value of [null, true, false, 0, 1.25, -7, "", "text", Number.MAX_SAFE_INTEGER, 1e300]) {
      assert.equal(roundTrip(value), value);
    }
    assert.equal(encodeValue(undefined), '{"$undefined":1}');
    assert.equal(roundTrip(undefined), undefined);
    const date = roundTrip(new Date("2024-01-01T00:00:00.000Z"));
    assert.ok(date instanceof Date);
    assert.equal(date.getTime(), Date.UTC(2024, 0, 1));
  });

  test("Dates are tagged with their ISO string", () => {
    assert.equal(encodeValue(new Date(0)), '{"$date":"1970-01-01T00:00:00.000Z"}');
  });

  test("Dates inside objects and arrays come back as Dates with the same time", () => {
    const value = { at: new Date(1_700_000_000_123), list: [new Date(0), 1, { when: new Date(-1) }] };
    const decoded = roundTrip(value) as typeof value;
    assert.deepEqual(decoded, value);
    assert.ok(decoded.at instanceof Date);
    assert.ok(decoded.list[0] instanceof Date);
    assert.equal((decoded.list[2] as { when: Date }).when.getTime(), -1);
  });

  test("Dates outside years 0-9999 round-trip", () => {
    for (const time of [8.64e15, -8.64e15, -62198755200000, 253402300800000]) {
      assert.equal((roundTrip(new Date(time)) as Date).getTime(), time);
    }
  });

  test("undefined round-trips as a property value, keeping the key", () => {
    const decoded = roundTrip({ a: undefined, b: 1 }) as Record<string, unknown>;
    assert.ok(Object.hasOwn(decoded, "a"));
    assert.equal(decoded.a, undefined);
    assert.deepEqual(Object.keys(decoded), ["a", "b"]);
  });

  test("undefined round-trips as an array element, keeping the length", () => {
    const decoded = roundTrip([undefined]) as unknown[];
    assert.equal(decoded.length, 1);
    assert.ok(0 in decoded);
    assert.equal(decoded[0], undefined);
    assert.deepEqual(roundTrip([1, undefined, 3, undefined]), [1, undefined, 3, undefined]);
  });

  test("undefined round-trips deep inside nested containers", () => {
    const value = { a: [{ b: undefined }, [undefined, { c: [undefined] }]] };
    assert.deepEqual(roundTrip(value), value);
  });

  test("sparse-array holes decode as undefined elements", () => {
    // deno-lint-ignore no-sparse-arrays
    const decoded = roundTrip([1, , 3]) as unknown[];
    assert.equal(decoded.length, 3);
    assert.ok(1 in decoded);
    assert.equal(decoded[1], undefined);
    const wide = roundTrip(new Array(3)) as unknown[];
    assert.deepEqual(wide, [undefined, undefined, undefined]);
  });

  test("-0 comes back as 0", () => {
    assert.ok(Object.is(roundTrip(-0), 0));
  });

  test("$-prefixed user keys are escaped by doubling the $ and unescaped on decode", () => {
    const value = { $ref: 1, plain: 2, $: 3, $$x: 4 };
    const text = encodeValue(value);
    assert.deepEqual(JSON.parse(text), { $$ref: 1, plain: 2, $$: 3, $$$x: 4 });
    const decoded = roundTrip(value) as Record<string, unknown>;
    assert.deepEqual(decoded, value);
    assert.deepEqual(Object.keys(decoded), ["$ref", "plain", "$", "$$x"]);
  });

  test("user keys named like the tags are not mistaken for tags", () => {
    for (const value of [{ $date: "2024-01-01T00:00:00.000Z" }, { $undefined: 1 }, { $date: new Date(0) }]) {
      assert.deepEqual(roundTrip(value), value);
    }
    assert.equal(encodeValue({ $undefined: 1 }), '{"$$undefined":1}');
    const nested = { a: [{ $date: "x", $undefined: undefined }] };
    assert.deepEqual(roundTrip(nested), nested);
  });

  test("string values that look like tags or escapes are left untouched", () => {
    const value = { s: '{"$date":"2024-01-01T00:00:00.000Z"}', t: '"$undefined"', u: "$$x" };
    assert.deepEqual(roundTrip(value), value);
  });

  test("a __proto__ own key round-trips as a plain property, with and without escaping", () => {
    const value = JSON.parse('{"__proto__":{"x":1},"$k":1}') as Record<string, unknown>;
    const decoded = roundTrip(value) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
    assert.ok(Object.hasOwn(decoded, "__proto__"));
    assert.deepEqual(Object.keys(decoded), ["__proto__", "$k"]);
    const withDate = JSON.parse('{"__proto__":1}') as Record<string, unknown>;
    Object.defineProperty(withDate, "__proto__", { value: new Date(0), enumerable: true });
    const decodedDate = roundTrip(withDate) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(decodedDate), Object.prototype);
    assert.ok(Object.getOwnPropertyDescriptor(decodedDate, "__proto__")?.value instanceof Date);
  });

  test("null-prototype objects are accepted and come back as plain objects", () => {
    const value = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1, at: new Date(5) });
    const decoded = roundTrip(value) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
    assert.equal(decoded.a, 1);
    assert.equal((decoded.at as Date).getTime(), 5);
  });

  test("unicode strings and keys, including lone surrogates, round-trip", () => {
    const value = { "héllo wörld": "日本語 🎉", "\u2028": "\ud800", emoji: ["👩‍👩‍👧", "\u0000"] };
    assert.deepEqual(roundTrip(value), value);
  });

  test("lone surrogates and NUL are written as JSON escapes, so no driver ever stores them raw", () => {
    // SQLite turns a raw lone surrogate into U+FFFD and node:sqlite cuts text at a raw NUL; the
    // encoded text must therefore be well-formed and NUL-free whatever the value holds.
    const odd = ["\ud83d", "\ude00x", "a\u0000b"];
    const values = [
      odd,
      Object.fromEntries(odd.map((text) => [text, text])),
      { $dollar: odd, at: new Date(0), gone: undefined, [`$${odd[0]}`]: odd[2] },
    ];
    for (const value of values) {
      const text = encodeValue(value);
      assert.equal(malformedName("text", text), undefined, text);
      assert.deepEqual(decodeValue(text), value);
    }
  });

  test("empty containers round-trip", () => {
    assert.deepEqual(roundTrip({}), {});
    assert.deepEqual(roundTrip([]), []);
    assert.deepEqual(roundTrip({ a: {}, b: [], c: [[]], d: [{}] }), { a: {}, b: [], c: [[]], d: [{}] });
  });

  test("key order is preserved when keys are escaped or values tagged", () => {
    const decoded = roundTrip({ z: 1, $y: undefined, x: new Date(0), w: 2 }) as object;
    assert.deepEqual(Object.keys(decoded), ["z", "$y", "x", "w"]);
  });

  test("a shared non-cyclic reference is accepted and encoded twice", () => {
    const shared = { n: 1, at: new Date(0) };
    const value = { a: shared, b: shared, list: [shared, shared] };
    const decoded = roundTrip(value) as { a: unknown; b: unknown; list: unknown[] };
    assert.deepEqual(decoded, value);
    assert.notEqual(decoded.a, decoded.b);
    const sharedArray = [1, 2];
    assert.deepEqual(roundTrip([sharedArray, { x: sharedArray }]), [[1, 2], { x: [1, 2] }]);
  });

  test("encoding does not mutate the input", () => {
    const inner = { $k: undefined, d: new Date(0) };
    const value = { inner, list: [undefined, inner] };
    encodeValue(value);
    assert.deepEqual(Object.keys(inner), ["$k", "d"]);
    assert.ok(inner.d instanceof Date);
    assert.equal(value.list.length, 2);
    assert.equal(value.list[1], inner);
  });

  test("encoding works on frozen input", () => {
    const value = deepFreeze({ a: [new Date(0), undefined], $b: 1 });
    assert.deepEqual(roundTrip(value), value);
  });

  test("decoded values are fresh: decoding the same text twice gives unshared objects", () => {
    const text = encodeValue({ a: { b: [1] }, $c: new Date(0) });
    const first = decodeValue(text) as { a: { b: number[] } };
    const second = decodeValue(text) as { a: { b: number[] } };
    assert.notEqual(first.a, second.a);
    first.a.b.push(2);
    assert.deepEqual(second.a.b, [1]);
  });
});

describe("encodeValue rejections", () => {
  class Foo {
    x = 1;
  }

  test("NaN, Infinity and -Infinity are rejected", () => {
    assertRejects(NaN, "Cannot store NaN", "$");
    assertRejects({ total: Infinity }, "Cannot store Infinity", "$.total");
    assertRejects([1, -Infinity], "Cannot store -Infinity", "$[1]");
  });

  test("bigints, functions and symbols are rejected", () => {
    assertRejects({ a: 1n }, "Cannot store a bigint", "$.a");
    assertRejects({ a: [() => 1] }, "Cannot store a function", "$.a[0]");
    assertRejects(function named() {}, "Cannot store a function", "$");
    assertRejects({ s: Symbol("x") }, "Cannot store a symbol", "$.s");
  });

  test("an object with an enumerable symbol key is rejected at the object's path", () => {
    assertRejects({ a: { [Symbol("k")]: 1 } }, "Cannot store a symbol key (Symbol(k))", "$.a");
    const hidden = { b: 1 };
    Object.defineProperty(hidden, Symbol("meta"), { value: 1, enumerable: false });
    assert.deepEqual(roundTrip(hidden), { b: 1 });
  });

  test("class instances are rejected naming the class", () => {
    assertRejects({ a: [0, 1, { b: new Foo() }] }, "Cannot store an instance of class Foo", "$.a[2].b");
    assertRejects(new Error("boom"), "Cannot store an instance of class Error", "$");
    assertRejects({ e: new (class {})() }, "Cannot store an instance of an anonymous class", "$.e");
    assertRejects(Object.create({ inherited: 1 }), "Cannot store an object with a custom prototype", "$");
  });

  test("Array and Date subclasses are rejected as class instances", () => {
    class MyArray extends Array {}
    class MyDate extends Date {}
    assertRejects({ list: MyArray.from([1]) }, "Cannot store an instance of class MyArray", "$.list");
    assertRejects(new MyDate(0), "Cannot store an instance of class MyDate", "$");
    assertRejects(Object.create(Date.prototype), "Cannot store an object with a custom prototype", "$");
  });

  test("Map, Set, WeakMap, WeakSet, RegExp and Promise are rejected by kind", () => {
    assertRejects({ m: new Map() }, "Cannot store a Map", "$.m");
    assertRejects({ s: new Set([1]) }, "Cannot store a Set", "$.s");
    assertRejects([new WeakMap()], "Cannot store a WeakMap", "$[0]");
    assertRejects([new WeakSet()], "Cannot store a WeakSet", "$[0]");
    assertRejects({ re: /x/g }, "Cannot store a RegExp", "$.re");
    assertRejects({ p: Promise.resolve(1) }, "Cannot store a Promise (was it awaited?)", "$.p");
  });

  test("typed arrays, DataView and ArrayBuffer are rejected by kind", () => {
    assertRejects({ bytes: new Uint8Array(2) }, "Cannot store a typed array (Uint8Array)", "$.bytes");
    assertRejects([new Float64Array(1)], "Cannot store a typed array (Float64Array)", "$[0]");
    assertRejects(new DataView(new ArrayBuffer(1)), "Cannot store a DataView", "$");
    assertRejects({ buf: new ArrayBuffer(1) }, "Cannot store an ArrayBuffer", "$.buf");
  });

  test("boxed primitives are rejected", () => {
    assertRejects({ n: Object(1) }, "Cannot store a boxed Number", "$.n");
    assertRejects({ s: Object("s") }, "Cannot store a boxed String", "$.s");
    assertRejects({ b: Object(true) }, "Cannot store a boxed Boolean", "$.b");
    assertRejects({ i: Object(1n) }, "Cannot store a boxed BigInt", "$.i");
    assertRejects({ y: Object(Symbol("y")) }, "Cannot store a boxed Symbol", "$.y");
  });

  test("Invalid Dates are rejected", () => {
    assertRejects(new Date(NaN), "Cannot store an Invalid Date", "$");
    assertRejects({ at: [new Date("nope")] }, "Cannot store an Invalid Date", "$.at[0]");
  });

  test("paths quote keys that are not identifiers", () => {
    assertRejects({ "my key": NaN }, "Cannot store NaN", '$["my key"]');
    assertRejects({ "0": NaN }, "Cannot store NaN", '$["0"]');
    assertRejects({ a: { 'q"uote': [NaN] } }, "Cannot store NaN", '$.a["q\\"uote"][0]');
    assertRejects({ $ok: { _x1: { café: NaN } } }, "Cannot store NaN", "$.$ok._x1.café");
    assertRejects({ "": NaN }, "Cannot store NaN", '$[""]');
  });

  test("a cycle is rejected at the path where it closes", () => {
    const self: Record<string, unknown> = {};
    self.self = self;
    assertRejects(self, "Cannot store a cyclic reference", "$.self");

    const root: { a: { b: unknown[] } } = { a: { b: [] } };
    root.a.b.push(1, root.a);
    assertRejects(root, "Cannot store a cyclic reference", "$.a.b[1]");

    const list: unknown[] = [];
    list.push(list);
    assertRejects(list, "Cannot store a cyclic reference", "$[0]");
  });

  test("nesting up to 1000 containers is accepted and deeper is rejected", () => {
    let ok: unknown = new Date(0);
    for (let i = 0; i < 1000; i++) ok = [ok];
    assert.ok(valuesEqual(roundTrip(ok), ok));
    assertRejects([ok], "Cannot store a value nested more than 1000 levels deep", "$" + "[0]".repeat(1000));
  });

  test("the first bad value in walk order is reported", () => {
    assertRejects({ a: 1, b: [2, NaN], c: 1n }, "Cannot store NaN", "$.b[1]");
  });

  test("the path names the user's key, not its escaped form", () => {
    assertRejects({ $date: NaN }, "Cannot store NaN", "$.$date");
  });

  test("an encoding of up to MAX_VALUE_BYTES (4 MiB) UTF-8 bytes is accepted, one byte more is rejected at $", () => {
    assert.equal(MAX_VALUE_BYTES, 4 * 1024 * 1024);
    // Two bytes of the limit are the string's quotes.
    assert.equal(encodeValue("x".repeat(MAX_VALUE_BYTES - 2)).length, MAX_VALUE_BYTES);
    const over = MAX_VALUE_BYTES + 1;
    assertRejects(
      "x".repeat(MAX_VALUE_BYTES - 1),
      `Cannot store a value of ${over} bytes encoded: the limit is ${MAX_VALUE_BYTES} bytes`,
      "$",
    );
  });

  test("the size limit counts UTF-8 bytes, not UTF-16 units", () => {
    // "é" is 2 bytes, "😀" 4 (a surrogate pair); the quotes add 2.
    assert.equal(encodeValue("é", 4), '"é"');
    assert.throws(() => encodeValue("é", 3), SerializationError);
    assert.equal(encodeValue("😀", 6), '"😀"');
    assert.throws(() => encodeValue("😀", 5), SerializationError);
    assert.equal(encodeValue(["é".repeat(10)], Infinity), '["éééééééééé"]');
  });
});

describe("decodeValue", () => {
  test("text without a $ key is returned by JSON.parse unchanged", () => {
    assert.deepEqual(decodeValue('{"a":[1,"$"],"b":null}'), { a: [1, "$"], b: null });
  });

  test("dollar signs in string values decode unchanged, with or without a walk", () => {
    const value = { price: "US$ 5", code: "$x", list: ["a$", "$", '"$"'] };
    assert.deepEqual(roundTrip(value), value);
    assert.deepEqual(decodeValue('["5$","$$"]'), ["5$", "$$"]);
  });

  test("invalid JSON is rejected with a SerializationError", () => {
    assertDecodeRejects("{not json", "$", /^Cannot decode invalid JSON/);
  });

  test("unknown tags are rejected, not passed through", () => {
    assertDecodeRejects('{"a":[{"$bigint":"1"}]}', "$.a[0]", /^Cannot decode unknown tag "\$bigint"/);
    assertDecodeRejects('{"$":1}', "$", /^Cannot decode unknown tag "\$"/);
  });

  test("a tag mixed with other keys is rejected", () => {
    assertDecodeRejects('{"$undefined":1,"x":2}', "$", /mixed with other keys/);
  });

  test("a malformed $date tag is rejected", () => {
    assertDecodeRejects('{"a":{"$date":"not a date"}}', "$.a", /^Cannot decode malformed \$date tag/);
    assertDecodeRejects('{"$date":5}', "$", /^Cannot decode malformed \$date tag/);
  });
});

describe("deepFreeze", () => {
  test("freezes nested objects, arrays and Dates and returns the same value", () => {
    const value = { a: { b: [1, { c: 2 }] }, at: new Date(0) };
    const frozen = deepFreeze(value);
    assert.equal(frozen, value);
    assert.ok(Object.isFrozen(value));
    assert.ok(Object.isFrozen(value.a));
    assert.ok(Object.isFrozen(value.a.b));
    assert.ok(Object.isFrozen(value.a.b[1]));
    assert.ok(Object.isFrozen(value.at));
    assert.throws(() => {
      (value.a.b as unknown[]).push(3);
    }, TypeError);
  });

  test("a frozen Date can still change its time through setTime (documented)", () => {
    const date = deepFreeze(new Date(0));
    date.setTime(5);
    assert.equal(date.getTime(), 5);
  });

  test("primitives and undefined pass through", () => {
    assert.equal(deepFreeze(1), 1);
    assert.equal(deepFreeze(undefined), undefined);
    assert.equal(deepFreeze(null), null);
  });

  test("terminates on cyclic values", () => {
    const value: Record<string, unknown> = {};
    value.self = value;
    deepFreeze(value);
    assert.ok(Object.isFrozen(value));
  });

  test("leaves non-plain objects such as Maps and typed arrays unfrozen", () => {
    const value = deepFreeze({ m: new Map(), bytes: new Uint8Array(1) });
    assert.ok(Object.isFrozen(value));
    assert.ok(!Object.isFrozen(value.m));
    assert.ok(!Object.isFrozen(value.bytes));
  });

  test("freezes null-prototype objects", () => {
    const inner = Object.create(null) as Record<string, unknown>;
    inner.x = [1];
    deepFreeze({ inner });
    assert.ok(Object.isFrozen(inner));
    assert.ok(Object.isFrozen(inner.x));
  });
});

describe("valuesEqual", () => {
  const date = (time: number): Date => new Date(time);
  const cases: ReadonlyArray<readonly [string, unknown, unknown, boolean]> = [
    ["equal primitives", 1, 1, true],
    ["different numbers", 1, 2, false],
    ["0 and -0", 0, -0, true],
    ["number and string", 1, "1", false],
    ["null and undefined", null, undefined, false],
    ["undefined and undefined", undefined, undefined, true],
    ["null and empty object", null, {}, false],
    ["objects in different key order", { a: 1, b: [1, 2] }, { b: [1, 2], a: 1 }, true],
    ["objects with different values", { a: 1 }, { a: 2 }, false],
    ["object with an extra key", { a: 1 }, { a: 1, b: 2 }, false],
    ["undefined value vs missing key", { a: undefined }, {}, false],
    ["undefined value vs different key", { a: undefined }, { b: undefined }, false],
    ["undefined values on both sides", { a: undefined }, { a: undefined }, true],
    [
      "null-prototype vs plain object",
      Object.assign(Object.create(null) as object, { a: 1 }),
      { a: 1 },
      true,
    ],
    ["arrays element by element", [1, [2, { c: 3 }]], [1, [2, { c: 3 }]], true],
    ["arrays in different order", [1, 2], [2, 1], false],
    ["arrays of different length", [1], [1, undefined], false],
    ["array hole vs undefined element", new Array(1), [undefined], true],
    ["array vs array-like object", [1], { 0: 1 }, false],
    ["empty array vs empty object", [], {}, false],
    ["Dates with the same time", date(5), date(5), true],
    ["Dates with different times", date(5), date(6), false],
    ["Date vs its ISO string", date(0), "1970-01-01T00:00:00.000Z", false],
    ["Date vs its time", date(0), 0, false],
    ["Date vs empty object", date(0), {}, false],
    ["nested Dates", { at: [date(1)] }, { at: [date(1)] }, true],
    ["distinct Maps", new Map(), new Map(), false],
    ["NaN and NaN", NaN, NaN, false],
  ];
  for (const [name, a, b, expected] of cases) {
    test(`${name}: ${expected ? "equal" : "not equal"}, in both orders`, () => {
      assert.equal(valuesEqual(a, b), expected);
      assert.equal(valuesEqual(b, a), expected);
    });
  }

  test("a value equals its round trip", () => {
    const value = { id: "x", at: date(7), list: [undefined, { $k: null }], nested: { deep: [date(8)] } };
    assert.ok(valuesEqual(decodeValue(encodeValue(value)), value));
  });

  test("the same object is equal to itself", () => {
    const value = { a: [1] };
    assert.ok(valuesEqual(value, value));
  });
});

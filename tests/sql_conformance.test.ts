// Every storage conformance case against every SQLite driver that loads in this runtime.
import { after, afterEach, describe, test } from "node:test";
import { conformanceCases } from "../src/storage/conformance.ts";
import { runtimeName } from "./support/runtime.ts";
import { sqliteSubjects } from "./support/sqlite_subjects.ts";

for (const subject of sqliteSubjects) {
  describe(`${subject.name} on ${runtimeName}`, () => {
    afterEach(() => subject.closeAll());
    after(() => subject.cleanup());
    for (const conformanceCase of conformanceCases) {
      test(
        `${subject.name} on ${runtimeName}: ${conformanceCase.name}`,
        { skip: subject.skipReason },
        async () => {
          const storage = await subject.open();
          await conformanceCase.run(storage, { openPeer: () => subject.openPeer() });
        },
      );
    }
  });
}

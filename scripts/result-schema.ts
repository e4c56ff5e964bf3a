// Writes docs/result-line.schema.json from the zod schema of a result line (`npm run schema`).
// test/unit/result-export.test.ts fails when the committed file and the schema differ.
import { writeFile } from 'node:fs/promises';
import { resultLineJsonSchema } from '@camflow/common';

await writeFile(new URL('../docs/result-line.schema.json', import.meta.url), `${JSON.stringify(resultLineJsonSchema(), null, 2)}\n`);

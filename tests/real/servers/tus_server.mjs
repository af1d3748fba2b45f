// The real tus server (@tus/server + @tus/file-store, what Supabase Storage is built on),
// mounted where Supabase serves resumable uploads, on loopback. Run by tests/real:
//
//   node tus_server.mjs MODULES_DIR DATA_DIR KEY
//
// MODULES_DIR holds node_modules with the pinned packages (scripts/real-setup); uploads are
// files under DATA_DIR. Every request must carry KEY as `Authorization: Bearer` (Supabase's
// gateway would refuse it otherwise). Upload ids are base64url("bucket/name/uuid") as
// Supabase names them. Prints `{"port": N}` once listening, then one JSON line per request
// (method, upload id, Upload-Offset, Content-Length), which the tests read as the server's log.
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [modules, data, key] = process.argv.slice(2)
const require = createRequire(path.join(modules, 'package.json'))
const load = (name) => import(pathToFileURL(require.resolve(name)).href)
const { Server } = await load('@tus/server')
const { FileStore } = await load('@tus/file-store')

const PATH = '/storage/v1/upload/resumable'

const tus = new Server({
  path: PATH,
  datastore: new FileStore({ directory: data }),
  namingFunction: (req, metadata) =>
    Buffer.from(`${metadata?.bucketName}/${metadata?.objectName}/${randomUUID()}`)
      .toString('base64url'),
  onIncomingRequest: async (req) => {
    if (req.headers.get('authorization') !== `Bearer ${key}`) {
      throw { status_code: 403, body: 'invalid signature\n' }
    }
  },
})

const server = http.createServer((req, res) => {
  const id = req.url.startsWith(PATH + '/') ? req.url.slice(PATH.length + 1) : null
  console.log(JSON.stringify({
    method: req.method, id, offset: req.headers['upload-offset'] ?? null,
    length: req.headers['content-length'] ?? null,
  }))
  tus.handle(req, res)
})
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }))
})
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)))

// kafkajs 2.2.4 (non-flexible protocol versions only) against runnel-broker.
//
// Usage: node kafkajs_check.js '{"broker":"127.0.0.1:9092","topic":"t","count":50,...}'
// Prints one JSON object on stdout (logs go to stderr); exit status 0 unless the script
// itself crashed. The pytest side (tests/compat/test_kafkajs.py) asserts on the JSON.
//
// What it does:
//   1. admin: createTopics, listTopics, fetchTopicMetadata
//   2. producer: `count` messages to partition 0 in several sends (keys, values, headers),
//      optionally gzip-compressed and/or idempotent; records each send's baseOffset
//   3. admin.fetchTopicOffsets: low/high watermarks
//   4. read back WITHOUT consumer groups: kafkajs's consumer needs FindCoordinator/JoinGroup,
//      so the records are fetched with kafkajs's own Fetch request and RecordBatch decoder,
//      through its cluster/broker layer (the same code path its consumer uses per fetch)
//   5. only with "group": true, the real group consumer (consumer.run/eachMessage), which
//      needs consumer groups in the broker
'use strict'

const { Kafka, CompressionTypes, logLevel } = require('kafkajs')

const opts = JSON.parse(process.argv[2] || '{}')
const broker = opts.broker
const topic = opts.topic
const count = opts.count || 50
const partitions = opts.partitions || 2
const deadlineMs = Date.now() + (opts.timeoutMs || 60000)

const stderrLogger = () => ({ namespace, level, label, log }) => {
  process.stderr.write(`[kafkajs ${label}] ${namespace}: ${log.message} ${JSON.stringify(log)}\n`)
}

const kafka = new Kafka({
  clientId: 'compat-kafkajs',
  brokers: [broker],
  connectionTimeout: 5000,
  requestTimeout: 15000,
  retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
  logLevel: logLevel.WARN,
  logCreator: stderrLogger,
})

function bufToStr (b) {
  return b == null ? null : Buffer.from(b).toString('utf8')
}

// kafkajs keeps its Cluster factory behind a module-private Symbol; find it by description.
function createCluster () {
  const sym = Object.getOwnPropertySymbols(kafka)
    .find(s => s.description === 'private:Kafka:createCluster')
  if (!sym) throw new Error('kafkajs internals changed: no createCluster symbol')
  return kafka[sym]({ allowAutoTopicCreation: false })
}

async function fetchWithoutGroup (cluster, topicName, partition, fromOffset, want) {
  await cluster.connect()
  await cluster.addTargetTopic(topicName)
  await cluster.refreshMetadata()
  const leaders = cluster.findLeaderForPartitions(topicName, [partition])
  const leaderId = Object.keys(leaders)[0]
  const leader = await cluster.findBroker({ nodeId: leaderId })
  const out = []
  let offset = BigInt(fromOffset)
  let highWatermark = null
  while (out.length < want && Date.now() < deadlineMs) {
    const response = await leader.fetch({
      maxWaitTime: 500,
      minBytes: 1,
      maxBytes: 1024 * 1024,
      isolationLevel: 1,
      topics: [{ topic: topicName, partitions: [{ partition, fetchOffset: offset.toString(), maxBytes: 64 * 1024 }] }],
    })
    for (const t of response.responses) {
      for (const p of t.partitions) {
        if (p.errorCode !== 0) throw new Error(`fetch error code ${p.errorCode}`)
        highWatermark = p.highWatermark
        for (const m of p.messages) {
          if (BigInt(m.offset) < offset || m.isControlRecord) continue
          out.push({
            offset: m.offset,
            key: bufToStr(m.key),
            value: bufToStr(m.value),
            headers: Object.fromEntries(Object.entries(m.headers || {}).map(([k, v]) => [k, bufToStr(v)])),
          })
          offset = BigInt(m.offset) + 1n
        }
      }
    }
  }
  return { messages: out, highWatermark }
}

async function consumeWithGroup (topicName, want) {
  const consumer = kafka.consumer({ groupId: `compat-kafkajs-${Date.now()}`, sessionTimeout: 10000 })
  const out = []
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [topicName], fromBeginning: true })
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve(), Math.max(0, deadlineMs - Date.now()))
      consumer.run({
        eachMessage: async ({ partition, message }) => {
          out.push({ partition, offset: message.offset, key: bufToStr(message.key), value: bufToStr(message.value) })
          if (out.length >= want) { clearTimeout(timer); resolve() }
        },
      }).catch(reject)
    })
  } finally {
    await consumer.disconnect()
  }
  return out
}

const result = { steps: [] }

async function main () {
  const admin = kafka.admin()
  await admin.connect()
  try {
    result.created = await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: partitions, replicationFactor: 1, configEntries: [{ name: 'retention.ms', value: '86400000' }] }],
    })
    result.createdAgain = await admin.createTopics({ topics: [{ topic, numPartitions: partitions }] })
    result.listed = (await admin.listTopics()).includes(topic)
    const md = await admin.fetchTopicMetadata({ topics: [topic] })
    result.metadataPartitions = md.topics[0].partitions.map(p => p.partitionId).sort()
    result.steps.push('admin')

    const producer = kafka.producer({ idempotent: !!opts.idempotent, maxInFlightRequests: opts.idempotent ? 1 : undefined })
    await producer.connect()
    result.sends = []
    const perSend = 10
    for (let i = 0; i < count; i += perSend) {
      const messages = []
      for (let j = i; j < Math.min(count, i + perSend); j++) {
        messages.push({ key: `k${j}`, value: `kafkajs value ${j}`, headers: { seq: `${j}`, lib: 'kafkajs' }, partition: 0 })
      }
      const meta = await producer.send({
        topic,
        acks: -1,
        compression: opts.gzip ? CompressionTypes.GZIP : CompressionTypes.None,
        messages,
      })
      result.sends.push(meta.map(m => ({ partition: m.partition, errorCode: m.errorCode, baseOffset: m.baseOffset })))
    }
    // one message to partition 1 through the default partitioner, keyed
    const keyed = await producer.send({ topic, messages: [{ key: 'p1', value: 'to-partition-1', partition: 1 }] })
    result.partition1 = keyed.map(m => ({ partition: m.partition, errorCode: m.errorCode, baseOffset: m.baseOffset }))
    await producer.disconnect()
    result.steps.push('produce')

    // ListOffsets failing must not hide whether Fetch works: record the error and go on
    try {
      result.offsets = (await admin.fetchTopicOffsets(topic))
        .map(o => ({ partition: o.partition, low: o.low, high: o.high }))
        .sort((a, b) => a.partition - b.partition)
      result.steps.push('offsets')
    } catch (e) {
      result.offsetsError = String((e && e.stack) || e)
    }

    const cluster = createCluster()
    try {
      const fetched = await fetchWithoutGroup(cluster, topic, 0, opts.fromOffset || 0, count - (opts.fromOffset || 0))
      result.fetched = fetched.messages
      result.fetchHighWatermark = fetched.highWatermark
    } finally {
      await cluster.disconnect()
    }
    result.steps.push('fetch')

    if (opts.group) {
      result.groupConsumed = await consumeWithGroup(topic, count + 1)
      result.steps.push('group')
    }
  } finally {
    await admin.disconnect()
  }
  return result
}

main().then(
  r => { process.stdout.write(JSON.stringify(r) + '\n'); process.exit(0) },
  e => {
    const failure = { error: String((e && e.stack) || e), name: e && e.name, type: e && e.type, stepsDone: result.steps }
    process.stdout.write(JSON.stringify(failure) + '\n')
    process.exit(0)
  },
)

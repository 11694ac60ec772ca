// kafkajs's part of the fuzz corpus capture (scripts/capture-corpus.py runs it with NODE_PATH
// set to tests/compat/js/node_modules): admin, produce, group consume, offsets, configs.
// Usage: node scripts/capture-corpus.js HOST:PORT
'use strict'

const { Kafka, CompressionTypes, ConfigResourceTypes, logLevel } = require('kafkajs')

const broker = process.argv[2]
const kafka = new Kafka({
  clientId: 'capture-kafkajs',
  brokers: [broker],
  connectionTimeout: 5000,
  requestTimeout: 10000,
  retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
  logLevel: logLevel.NOTHING
})

async function attempt (what, fn) {
  try {
    return await fn()
  } catch (e) {
    process.stderr.write(`  ${what}: ${e.name}: ${e.message}\n`)
    return null
  }
}

async function main () {
  const suffix = Math.random().toString(16).slice(2, 8)
  const topic = `kjs-${suffix}`
  const groupId = `kjs-group-${suffix}`
  const admin = kafka.admin()
  await admin.connect()
  await attempt('createTopics', () => admin.createTopics({
    topics: [{ topic, numPartitions: 2, configEntries: [{ name: 'retention.ms', value: '3600000' }] }]
  }))
  await attempt('listTopics', () => admin.listTopics())
  await attempt('fetchTopicMetadata', () => admin.fetchTopicMetadata({ topics: [topic] }))
  await attempt('describeCluster', () => admin.describeCluster())
  await attempt('describeConfigs', () => admin.describeConfigs({
    includeSynonyms: true, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }]
  }))
  await attempt('alterConfigs', () => admin.alterConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '7200000' }] }]
  }))
  await attempt('createPartitions', () => admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] }))

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  for (let i = 0; i < 4; i++) {
    await attempt('send', () => producer.send({
      topic,
      compression: i % 2 ? CompressionTypes.GZIP : CompressionTypes.None,
      messages: [0, 1, 2, 3, 4].map(j => ({ key: `k${i}-${j}`, value: `v${i}-${j}`, partition: j % 2, headers: { h: '1' } }))
    }))
  }
  await producer.disconnect()
  const plain = kafka.producer()
  await plain.connect()
  await attempt('send acks=1', () => plain.send({ topic, acks: 1, messages: [{ value: 'one' }] }))
  await plain.disconnect()

  const consumer = kafka.consumer({ groupId, heartbeatInterval: 200, sessionTimeout: 6000, maxWaitTimeInMs: 100 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  let seen = 0
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 15000)
    consumer.run({
      autoCommitInterval: 100,
      eachMessage: async () => {
        seen += 1
        if (seen >= 21) { clearTimeout(timer); setTimeout(resolve, 800) }
      }
    })
  })
  await attempt('commitOffsets', () => consumer.commitOffsets([{ topic, partition: 0, offset: '2' }]))
  await consumer.disconnect()

  await attempt('fetchTopicOffsets', () => admin.fetchTopicOffsets(topic))
  await attempt('fetchTopicOffsetsByTimestamp', () => admin.fetchTopicOffsetsByTimestamp(topic, 0))
  await attempt('listGroups', () => admin.listGroups())
  await attempt('describeGroups', () => admin.describeGroups([groupId]))
  await attempt('fetchOffsets', () => admin.fetchOffsets({ groupId, topics: [topic] }))
  await attempt('setOffsets', () => admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '1' }] }))
  await attempt('deleteTopicRecords', () => admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '1' }] }))
  await attempt('deleteGroups', () => admin.deleteGroups([groupId]))
  await attempt('deleteTopics', () => admin.deleteTopics({ topics: [topic] }))
  await admin.disconnect()
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`kafkajs capture failed: ${e.stack}\n`)
  process.exit(1)
})

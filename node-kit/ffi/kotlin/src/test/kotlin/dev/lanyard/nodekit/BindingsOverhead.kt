package dev.lanyard.nodekit

import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable
import java.io.File

/**
 * The JVM half of the bindings' cost (`bindings_overhead` in apps/lanyard/tests/kotlin_sdk.rs runs the Rust
 * half against the same computer and says where it is): the same calls and the same replayed
 * turn through the bindings, then the memory of connected clients. Writes its medians to
 * LANYARD_MEASURE_OUT.
 */
@EnabledIfEnvironmentVariable(named = "LANYARD_MEASURE_GATEWAY", matches = ".+")
class BindingsOverhead {
    private val options = defaultConnectOptions().copy(mdns = false)
    private val measured = StringBuilder()

    @Test
    fun `measures calls, replayed events and memory per client`() = runBlocking {
        val kit = NodeKit(MemoryKeyStore(), "Kotlin phone", "android")
        // The first client pays for the library and its runtime; the memory of the others is measured
        // before the timed phases leave anything behind.
        val connection = kit.connect(pairPaced(kit).bridgeId, options, null, null)
        val clients = Computer.env("LANYARD_MEASURE_CLIENTS").toInt()
        val (heapBefore, rssBefore) = memory()
        val connected = (1..clients).map {
            val other = NodeKit(MemoryKeyStore(), "Measured phone", "android")
            other to other.connect(pairPaced(other).bridgeId, options, null, null)
        }
        val (heapAfter, rssAfter) = memory()
        check(connected.all { it.second.linkState() is LinkState.Connected })
        record("client_heap_kib", (heapAfter - heapBefore) / 1024.0 / clients)
        record("client_rss_kib", (rssAfter - rssBefore) / 1024.0 / clients)
        connected.forEach { it.second.close() }

        val calls = (0 until 1050).map { timed { connection.pending() } }.drop(50)
        record("call_us", median(calls) / 1e3)

        val first = withTimeout(120_000) { connection.ask(prompt("say LONG")).toList() }
        val runId = (first.first() as TurnUpdate.Event).event.runId
        val perEvent = (0 until 25).map {
            var events = 0
            val took = timed { events = connection.follow(runId).updates.toList().count { it is TurnUpdate.Event } }
            took / events
        }
        record("event_us", median(perEvent) / 1e3)
        connection.close()

        File(Computer.env("LANYARD_MEASURE_OUT")).writeText(measured.toString())
    }

    /**
     * Pairs [kit] with a fresh connection string (each replaces the last), waiting as long as the bridge's
     * limit on pairing codes per address says: every client here comes from 127.0.0.1.
     */
    private suspend fun pairPaced(kit: NodeKit): PairedComputer {
        while (true) {
            val builder = ProcessBuilder(Computer.env("LANYARD_BIN"), "--url", Computer.env("LANYARD_MEASURE_GATEWAY"), "pair", "--string")
            builder.environment()["LANYARD_HOME"] = Computer.env("LANYARD_MEASURE_HOME")
            val cli = builder.redirectError(ProcessBuilder.Redirect.DISCARD).start()
            val string = cli.inputStream.bufferedReader().readText().trim()
            check(cli.waitFor() == 0) { "lanyard pair --string failed" }
            try {
                return kit.pairWithConnectionString(string)
            } catch (limited: NodeKitException.Remote) {
                val wait = Regex("retry in (\\d+) ms").find(limited.detail)?.groupValues?.get(1)?.toLong() ?: throw limited
                kotlinx.coroutines.delay(wait + 100)
            }
        }
    }

    private fun record(key: String, value: Double) {
        measured.appendLine("MEASURED $key $value")
    }

    private inline fun timed(work: () -> Unit): Long {
        val started = System.nanoTime()
        work()
        return System.nanoTime() - started
    }

    private fun median(samples: List<Long>): Double = samples.sorted()[samples.size / 2].toDouble()

    /** The live heap after a full collection, and the process's resident set, in bytes. */
    private fun memory(): Pair<Long, Long> {
        repeat(3) { System.gc() }
        val runtime = Runtime.getRuntime()
        val rss = File("/proc/self/status").readLines().first { it.startsWith("VmRSS:") }.split(Regex("\\s+"))[1].toLong() * 1024
        return (runtime.totalMemory() - runtime.freeMemory()) to rss
    }
}

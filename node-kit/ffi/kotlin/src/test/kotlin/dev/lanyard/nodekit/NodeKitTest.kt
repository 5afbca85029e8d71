package dev.lanyard.nodekit

import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import java.awt.image.BufferedImage
import java.io.ByteArrayOutputStream
import java.io.File
import java.util.Base64
import javax.imageio.ImageIO

/** The whole flow from Kotlin, through the real native library, against a real computer. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class NodeKitTest {
    private val computer = Computer()
    private val cwd = File(Computer.env("LANYARD_TEST_CWD"))

    @AfterAll
    fun stop() = computer.close()

    private fun options() = defaultConnectOptions().copy(mdns = false)

    /** A new device, paired with the computer through a fresh connection string. */
    private fun paired(name: String, store: KeyStore = MemoryKeyStore()): Pair<NodeKit, PairedComputer> = runBlocking {
        val kit = NodeKit(store, name, "android")
        kit to kit.pairWithConnectionString(computer.connectionString())
    }

    @Test
    fun `pairs by connection string and streams a turn, every event once and in order`() = runBlocking {
        val (kit, pc) = paired("Streaming phone")
        assertEquals(listOf(pc), kit.computers())
        val connection = kit.connect(pc.bridgeId, options(), null, null)
        assertTrue(connection.linkState() is LinkState.Connected, "${connection.linkState()}")
        val updates = withTimeout(60_000) { connection.ask(prompt("say STREAM")).toList() }
        val events = updates.filterIsInstance<TurnUpdate.Event>().map { it.event }
        val text = events.map { it.kind }.filterIsInstance<TurnEventKind.Text>().joinToString("") { it.text }
        assertEquals("Hello from the computer", text)
        assertEquals((1..events.size).map { it.toULong() }, events.map { it.seq })
        val outcome = (updates.last() as TurnUpdate.Finished).outcome
        assertTrue(outcome.completed)
        assertEquals("Hello from the computer", outcome.result)
        // The registry now knows the computer by name and how it was reached.
        val known = kit.computers().single()
        assertEquals(NetworkPath.LAN, known.lastPath)
        assertTrue(known.name != null, "$known")
        assertEquals(1, connection.sessions().size)
        connection.close()
    }

    @Test
    fun `permission prompts are answered allow and deny`() = runBlocking {
        val (kit, pc) = paired("Answering phone")
        val connection = kit.connect(pc.bridgeId, options(), null, null)
        for ((file, decision) in listOf("kotlin-allowed.txt" to Decision.ALLOW, "kotlin-denied.txt" to Decision.DENY)) {
            val turn = connection.turn(prompt("please PERMIT $file"))
            val outcome = withTimeout(60_000) {
                var finished: TurnOutcome? = null
                turn.updates.collect { update ->
                    when (update) {
                        is TurnUpdate.Event -> (update.event.kind as? TurnEventKind.Permission)?.let { asked ->
                            assertEquals("Bash", asked.toolName)
                            connection.respond(turn.runId, asked.requestId, decision, "not now", emptyMap())
                        }
                        is TurnUpdate.Finished -> finished = update.outcome
                    }
                }
                finished!!
            }
            if (decision == Decision.ALLOW) {
                assertEquals("ran: wrote $file", outcome.result)
                assertEquals("permitted", File(cwd, file).readText().trim())
            } else {
                assertTrue(outcome.result.startsWith("refused: "), outcome.result)
                assertFalse(File(cwd, file).exists())
            }
        }
        connection.close()
    }

    @Test
    fun `a Kotlin screen snapshot handler's PNG reaches the model`() = runBlocking {
        val (kit, pc) = paired("Screen phone")
        val png = png()
        val asked = CompletableDeferred<String>()
        val handler = object : CommandHandler {
            override fun handle(command: String, paramsJson: String): CommandReply {
                asked.complete(command)
                return CommandReply.Snapshot(ImageKind.PNG, 3u, 2u, png)
            }
        }
        val withScreen = options().copy(commands = listOf("screen.snapshot"), caps = listOf("screen"))
        val connection = kit.connect(pc.bridgeId, withScreen, handler, null)
        val outcome = withTimeout(60_000) {
            connection.ask(prompt("SNAPSHOT ${kit.nodeId()} please")).filterIsInstance<TurnUpdate.Finished>().first()
        }.outcome
        assertEquals("screen.snapshot", asked.await())
        assertEquals("image:" + Base64.getEncoder().encodeToString(png), outcome.result)
        connection.close()
    }

    @Test
    fun `cancelling the collecting coroutine stops the turn at the computer`() = runBlocking {
        val (kit, pc) = paired("Coroutine phone")
        val connection = kit.connect(pc.bridgeId, options(), null, null)
        val firstEvent = CompletableDeferred<TurnEvent>()
        val job = launch {
            connection.ask(prompt("go SLOW")).collect { update ->
                if (update is TurnUpdate.Event) firstEvent.complete(update.event)
            }
        }
        val runId = withTimeout(60_000) { firstEvent.await() }.runId
        job.cancel()
        job.join()
        // Followed again from the start: the computer says the turn ended cancelled, long before the
        // model's 30 s answer would have.
        val outcome = withTimeout(20_000) {
            connection.follow(runId).updates.filterIsInstance<TurnUpdate.Finished>().first()
        }.outcome
        assertFalse(outcome.completed, "$outcome")
        connection.close()
    }

    @Test
    fun `the explicit handle cancels a turn`() = runBlocking {
        val (kit, pc) = paired("Handle phone")
        val connection = kit.connect(pc.bridgeId, options(), null, null)
        val turn = connection.turn(prompt("go SLOW"))
        val updates = mutableListOf<TurnUpdate>()
        withTimeout(30_000) {
            turn.updates.collect { update ->
                updates += update
                if (updates.size == 1) assertEquals(CancelPhase.RUNNING, turn.cancel())
            }
        }
        val outcome = (updates.last() as TurnUpdate.Finished).outcome
        assertFalse(outcome.completed, "$outcome")
        assertTrue(updates.size < 60, "the stream stopped early: ${updates.size} updates")
        connection.close()
    }

    @Test
    fun `the key lives only in the app's key store`() = runBlocking {
        val started = System.currentTimeMillis()
        val store = MemoryKeyStore()
        val (kit, pc) = paired("Keystore phone", store)
        val connection = kit.connect(pc.bridgeId, options(), null, null)
        connection.close()
        val pem = String(store.items.getValue("device-key"))
        assertTrue(pem.startsWith("-----BEGIN PRIVATE KEY-----"), "a PKCS#8 key")
        val body = pem.lines().filter { !it.startsWith("-----") }.joinToString("")
        // No file written since the test began holds the key: not in the temp dir, home or working dir.
        val places = listOf(System.getProperty("java.io.tmpdir"), System.getProperty("user.home"), System.getProperty("user.dir"))
        for (place in places) {
            File(place).walkTopDown().maxDepth(6).filter { it.isFile && it.lastModified() >= started - 1000 && it.length() < 1_000_000 }
                .forEach { file -> assertFalse(runCatching { file.readText().contains(body) }.getOrDefault(false), "$file holds the key") }
        }
        // The same store is the same device, still paired; without the key item it is another device.
        val again = NodeKit(store, "Keystore phone", "android")
        assertEquals(kit.nodeId(), again.nodeId())
        again.connect(pc.bridgeId, options(), null, null).close()
        store.delete("device-key")
        val other = NodeKit(store, "Keystore phone", "android")
        assertNotEquals(kit.nodeId(), other.nodeId())
        assertThrows<NodeKitException.Unpaired> { runBlocking { other.connect(pc.bridgeId, options(), null, null) } }
        Unit
    }

    @Test
    fun `pairs by approval with the same code on both sides`() = runBlocking {
        val kit = NodeKit(MemoryKeyStore(), "Approved phone", "ios")
        val approval = kit.requestPairing("127.0.0.1:${computer.bridgePort}", "The computer")
        val pending = computer.lanyard("nodes", "pending", "--json")
        val requestId = Regex("\"requestId\":\\s*\"([^\"]+)\"").find(pending)!!.groupValues[1]
        val sas = Regex("\"sas\":\\s*\"([^\"]+)\"").find(pending)!!.groupValues[1]
        assertEquals(approval.sas(), sas, pending)
        val approved = async { approval.approved() }
        computer.lanyard("nodes", "approve", requestId)
        val pc = withTimeout(30_000) { approved.await() }
        assertEquals(approval.bridgeId(), pc.bridgeId)
        assertEquals("The computer", kit.computers().single().name)
        val connection = kit.connect(pc.bridgeId, options(), null, null)
        assertTrue(connection.linkState() is LinkState.Connected)
        connection.close()
    }

    @Test
    fun `the link state follows a bridge restart, then a revocation`() = runBlocking {
        val (kit, pc) = paired("Linked phone")
        val connection = kit.connect(pc.bridgeId, options().copy(maxRetryDelayMs = 1000uL), null, null)
        val states = java.util.Collections.synchronizedList(mutableListOf<LinkState>())
        val watching = launch(kotlinx.coroutines.Dispatchers.IO) { connection.linkStates().collect { states += it } }
        eventually(10, "the first state") { states.isNotEmpty() }
        assertTrue(states[0] is LinkState.Connected, "$states")
        computer.stop()
        eventually(20, "reconnecting with the next attempt") {
            states.any { it is LinkState.Reconnecting && it.nextAttemptMs != null }
        }
        assertTrue(connection.linkState() !is LinkState.Connected, "${connection.linkState()}")
        assertThrows<NodeKitException> { runBlocking { connection.sessions() } }
        computer.start()
        eventually(30, "connected again") { connection.linkState() is LinkState.Connected }
        assertTrue(states.last() is LinkState.Connected, "$states")
        computer.lanyard("nodes", "revoke", kit.nodeId())
        eventually(20, "unpaired") { connection.linkState() is LinkState.Unpaired }
        watching.join()
        assertTrue(states.last() is LinkState.Unpaired, "$states")
        connection.close()
    }

    @Test
    fun `a turn cut off mid-stream catches up on another path, every event once`() = runBlocking {
        val (kit, pc) = paired("Roaming phone")
        val relay = Cuttable(computer.bridgePort)
        // The app's own browser (NsdManager, NWBrowser) reports the computer behind the cuttable relay,
        // then, once that network is gone, at its address on the other one.
        val hint = pc.bridgeId.split("-").take(2).joinToString("-")
        val at = { port: Int -> DiscoveredComputer("computer", listOf("127.0.0.1:$port"), "The computer", hint) }
        val reporting = CompletableDeferred<BrowseSink>()
        val browser = object : BrowseSource {
            override fun start(sink: BrowseSink) {
                sink.found(at(relay.port))
                reporting.complete(sink)
            }

            override fun stop() {}
        }
        val connection = kit.connect(pc.bridgeId, options().copy(maxRetryDelayMs = 1000uL), null, browser)
        assertEquals(LinkState.Connected(NetworkPath.LAN, "127.0.0.1:${relay.port}"), connection.linkState())
        val turn = connection.turn(prompt("go SLOW"))
        val events = mutableListOf<TurnEvent>()
        var outcome: TurnOutcome? = null
        withTimeout(90_000) {
            turn.updates.collect { update ->
                when (update) {
                    is TurnUpdate.Event -> {
                        events += update.event
                        if (events.size == 5) {
                            relay.cut()
                            reporting.await().found(at(computer.bridgePort))
                        }
                    }
                    is TurnUpdate.Finished -> outcome = update.outcome
                }
            }
        }
        assertEquals(LinkState.Connected(NetworkPath.LAN, "127.0.0.1:${computer.bridgePort}"), connection.linkState())
        assertEquals((1..events.size).map { it.toULong() }, events.map { it.seq })
        val text = events.map { it.kind }.filterIsInstance<TurnEventKind.Text>().joinToString("") { it.text }
        assertEquals((0 until 80).joinToString("") { "$it " }, text)
        assertTrue(outcome!!.completed)
        connection.close()
    }

    private fun png(): ByteArray {
        val image = BufferedImage(3, 2, BufferedImage.TYPE_INT_RGB)
        image.setRGB(0, 0, 0xff0000)
        image.setRGB(2, 1, 0x0000ff)
        return ByteArrayOutputStream().also { ImageIO.write(image, "png", it) }.toByteArray()
    }
}

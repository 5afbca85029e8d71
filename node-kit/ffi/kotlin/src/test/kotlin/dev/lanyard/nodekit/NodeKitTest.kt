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
import org.junit.jupiter.api.AfterEach
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
    fun stop() {
        relay.close()
        computer.close()
    }

    private fun options() = defaultConnectOptions().copy(mdns = false)

    // One device serves most tests: the bridge lets a source try only a few pairing codes a minute. It
    // pairs through a cuttable relay in front of the bridge (the string's port changed to the relay's),
    // so that is the address it knows until the cut test moves it.
    private val relay = Cuttable(computer.bridgePort)
    private val created = System.currentTimeMillis()
    private val store = MemoryKeyStore()
    private val kit = NodeKit(store, "Test phone", "android")
    private val pc = runBlocking {
        kit.pairWithConnectionString(computer.connectionString().replace(":${computer.bridgePort}?", ":${relay.port}?"))
    }
    private val opened = mutableListOf<Connection>()

    /** Connects the shared device; closed after the test whatever happens. */
    private suspend fun connect(options: ConnectOptions = options(), commands: CommandHandler? = null, browse: BrowseSource? = null) =
        kit.connect(pc.bridgeId, options, commands, browse).also { opened += it }

    @AfterEach
    fun closeConnections() {
        opened.forEach { it.close() }
        opened.clear()
    }

    @Test
    fun `pairs by connection string and streams a turn, every event once and in order`() = runBlocking {
        assertEquals(pc.bridgeId, kit.computers().single().bridgeId)
        val connection = connect()
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
        // Other tests may have started conversations of their own on this device.
        assertTrue(connection.sessions().isNotEmpty())
        connection.close()
    }

    @Test
    fun `permission prompts are answered allow and deny`() = runBlocking {
        val connection = connect()
        for ((file, decision) in listOf("kotlin-allowed.txt" to Decision.ALLOW, "kotlin-denied.txt" to Decision.DENY)) {
            val turn = connection.turn(prompt("please PERMIT $file"))
            val closed = mutableListOf<String>()
            val outcome = withTimeout(60_000) {
                var finished: TurnOutcome? = null
                turn.updates.collect { update ->
                    when (update) {
                        is TurnUpdate.Event -> when (val kind = update.event.kind) {
                            is TurnEventKind.Permission -> {
                                assertEquals("Bash", kind.toolName)
                                connection.respond(turn.runId, kind.requestId, decision, null, emptyMap())
                            }
                            is TurnEventKind.PromptClosed -> closed += kind.resolution
                            else -> {}
                        }
                        is TurnUpdate.Finished -> finished = update.outcome
                    }
                }
                finished!!
            }
            assertEquals(listOf(if (decision == Decision.ALLOW) "allowed" else "denied"), closed)
            if (decision == Decision.ALLOW) {
                assertEquals("ran: wrote $file", outcome.result)
                assertEquals("permitted", File(cwd, file).readText().trim())
            } else {
                assertEquals("refused", outcome.result)
                assertFalse(File(cwd, file).exists())
            }
        }
        connection.close()
    }

    @Test
    fun `a Kotlin screen snapshot handler's PNG reaches the model`() = runBlocking {
        val png = png()
        val asked = CompletableDeferred<String>()
        val handler = object : CommandHandler {
            override fun handle(command: String, paramsJson: String): CommandReply {
                asked.complete(command)
                return CommandReply.Snapshot(ImageKind.PNG, 3u, 2u, png)
            }
        }
        val withScreen = options().copy(commands = listOf("screen.snapshot"), caps = listOf("screen"))
        val connection = connect(withScreen, handler)
        val outcome = withTimeout(60_000) {
            connection.ask(prompt("SNAPSHOT ${kit.nodeId()} please")).filterIsInstance<TurnUpdate.Finished>().first()
        }.outcome
        assertEquals("screen.snapshot", asked.await())
        assertEquals("image:" + Base64.getEncoder().encodeToString(png), outcome.result)
        connection.close()
    }

    @Test
    fun `cancelling the collecting coroutine stops the turn at the computer`() = runBlocking {
        val connection = connect()
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
        val connection = connect()
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
        val connection = connect()
        connection.close()
        val pem = String(store.items.getValue("device-key"))
        assertTrue(pem.startsWith("-----BEGIN PRIVATE KEY-----"), "a PKCS#8 key")
        val body = pem.lines().filter { !it.startsWith("-----") }.joinToString("")
        // No file written since the device was created holds the key (its PEM body, however wrapped): not
        // in the temp dir, home or working dir.
        val places = listOf(System.getProperty("java.io.tmpdir"), System.getProperty("user.home"), System.getProperty("user.dir"))
        for (place in places) {
            File(place).walkTopDown().maxDepth(6).filter { it.isFile && it.lastModified() >= created - 1000 && it.length() < 1_000_000 }
                .forEach { file -> assertFalse(runCatching { file.readText().filterNot { it.isWhitespace() }.contains(body) }.getOrDefault(false), "$file holds the key") }
        }
        // A copy of the store is the same device, still paired; without the key item it is another device.
        val copy = MemoryKeyStore().also { it.items.putAll(store.items) }
        val again = NodeKit(copy, "Test phone", "android")
        assertEquals(kit.nodeId(), again.nodeId())
        again.connect(pc.bridgeId, options(), null, null).close()
        copy.delete("device-key")
        val other = NodeKit(copy, "Test phone", "android")
        assertNotEquals(kit.nodeId(), other.nodeId())
        assertThrows<NodeKitException.Unpaired> { runBlocking { other.connect(pc.bridgeId, options(), null, null) } }
        Unit
    }

    @Test
    fun `pairs by approval with the same code on both sides, then follows a bridge restart and a revocation`() = runBlocking {
        val approvedKit = NodeKit(MemoryKeyStore(), "Approved phone", "ios")
        val approval = approvedKit.requestPairing("127.0.0.1:${computer.bridgePort}", "The computer")
        val pending = computer.lanyard("nodes", "pending", "--json")
        val requestId = Regex("\"requestId\":\\s*\"([^\"]+)\"").find(pending)!!.groupValues[1]
        val sas = Regex("\"sas\":\\s*\"([^\"]+)\"").find(pending)!!.groupValues[1]
        assertEquals(approval.sas(), sas, pending)
        val approved = async { approval.approved() }
        computer.lanyard("nodes", "approve", requestId)
        val paired = withTimeout(30_000) { approved.await() }
        assertEquals(approval.bridgeId(), paired.bridgeId)
        assertEquals("The computer", approvedKit.computers().single().name)

        val connection = approvedKit.connect(paired.bridgeId, options().copy(maxRetryDelayMs = 1000uL), null, null)
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
        eventually(5, "the listener told") { states.last() is LinkState.Connected }
        computer.lanyard("nodes", "revoke", approvedKit.nodeId())
        eventually(20, "unpaired") { connection.linkState() is LinkState.Unpaired }
        watching.join()
        assertTrue(states.last() is LinkState.Unpaired, "$states")
        connection.close()
    }

    @Test
    fun `a turn cut off mid-stream catches up on another path, every event once`() = runBlocking {
        // The app's own browser (NsdManager, NWBrowser) sees nothing at first; once the relay's network
        // is gone it reports the computer at its address on the other one.
        val hint = pc.bridgeId.split("-").take(2).joinToString("-")
        val reporting = CompletableDeferred<BrowseSink>()
        val browser = object : BrowseSource {
            override fun start(sink: BrowseSink) {
                reporting.complete(sink)
            }

            override fun stop() {}
        }
        val connection = connect(options().copy(maxRetryDelayMs = 1000uL), browse = browser)
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
                            val there = listOf("127.0.0.1:${computer.bridgePort}")
                            assertTrue(reporting.await().found(DiscoveredComputer("computer", there, "The computer", hint)))
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

    /** Runs [text]'s turn, handing each question it raises to [answer]; its outcome. */
    private suspend fun promptedTurn(connection: Connection, text: String, answer: suspend (RunningTurn, TurnEventKind.Question) -> Unit): TurnOutcome {
        val turn = connection.turn(prompt(text))
        var finished: TurnOutcome? = null
        withTimeout(60_000) {
            turn.updates.collect { update ->
                when (update) {
                    is TurnUpdate.Event -> when (val kind = update.event.kind) {
                        is TurnEventKind.Question -> answer(turn, kind)
                        else -> {}
                    }
                    is TurnUpdate.Finished -> finished = update.outcome
                }
            }
        }
        return finished!!
    }

    @Test
    fun `a question is answered with the chosen label`() = runBlocking {
        val connection = connect()
        val answered = promptedTurn(connection, "please ASK-ME") { turn, kind ->
            val question = kind.questions.single()
            assertEquals("Which color?", question.question)
            assertEquals(listOf("Red", "Blue"), question.options.map { it.label })
            connection.respond(turn.runId, kind.requestId, Decision.ALLOW, null, mapOf(question.question to "Blue"))
        }
        assertTrue(answered.result.startsWith("answered: ") && answered.result.contains("\"Which color?\"=\"Blue\""), "$answered")
        connection.close()
    }

    @Test
    fun `pending lists the prompt waiting for an answer, and not once answered`() = runBlocking {
        val connection = connect()
        val outcome = promptedTurn(connection, "please ASK-ME") { turn, asked ->
            val pending = connection.pending()
            assertEquals(listOf(asked.requestId), pending.map { (it.kind as TurnEventKind.Question).requestId }, "$pending")
            assertEquals(turn.runId, pending.single().runId)
            connection.respond(turn.runId, asked.requestId, Decision.ALLOW, null, mapOf(asked.questions.single().question to "Red"))
        }
        assertTrue(outcome.completed, "$outcome")
        assertEquals(emptyList<TurnEvent>(), connection.pending())
        connection.close()
    }

    @Test
    fun `history holds a finished turn, the prompt and the answer`() = runBlocking {
        val connection = connect()
        val session = "kotlin-history"
        withTimeout(60_000) { connection.ask(prompt("say HISTORY", session)).toList() }
        val history = connection.history(session, null, null)
        assertEquals(listOf("user" to "say HISTORY", "assistant" to "Hello from the computer"), history.map { it.role to it.text })
        assertEquals(history.map { it.index }.sorted(), history.map { it.index })
        assertTrue(connection.sessions().any { it.sessionKey == session }, "${connection.sessions()}")
        connection.close()
    }

    @Test
    fun `an image attached to a prompt reaches the model`() = runBlocking {
        val png = png()
        val connection = connect()
        val outcome = withTimeout(60_000) {
            connection.ask(prompt("LOOK at this", images = listOf(Image("image/png", png)))).filterIsInstance<TurnUpdate.Finished>().first()
        }.outcome
        assertEquals("image:" + Base64.getEncoder().encodeToString(png), outcome.result)
        connection.close()
    }

    private fun png(): ByteArray {
        val image = BufferedImage(3, 2, BufferedImage.TYPE_INT_RGB)
        image.setRGB(0, 0, 0xff0000)
        image.setRGB(2, 1, 0x0000ff)
        return ByteArrayOutputStream().also { ImageIO.write(image, "png", it) }.toByteArray()
    }
}

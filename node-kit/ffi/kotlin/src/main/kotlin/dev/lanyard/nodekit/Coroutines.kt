// The idiomatic Kotlin layer over the generated bindings: turns, link states and discovery as Flows,
// with coroutine cancellation reaching the computer.
package dev.lanyard.nodekit

import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.flow
import kotlinx.coroutines.withContext

/** What a turn's flow carries: its events in order, each once, then its outcome. */
sealed interface TurnUpdate {
    data class Event(val event: TurnEvent) : TurnUpdate
    data class Finished(val outcome: TurnOutcome) : TurnUpdate
}

/** The turn failed, or could not be followed to its end; [code] is the protocol's error code, if any. */
class TurnFailedException(message: String, val code: String?) : Exception(message)

/** A turn the computer took: its [handle] (run ID, explicit cancel) and its [updates]. */
class RunningTurn internal constructor(val handle: Turn, private val channel: Channel<TurnUpdate>) {
    val runId: String get() = handle.runId()

    /**
     * The turn's events, then [TurnUpdate.Finished]. Collect it once. When the collecting coroutine is
     * cancelled before the end, the turn is cancelled at the computer too.
     */
    val updates: Flow<TurnUpdate> = flow {
        var ended = false
        try {
            for (update in channel) {
                if (update is TurnUpdate.Finished) ended = true
                emit(update)
            }
            ended = true
        } catch (failed: TurnFailedException) {
            ended = true
            throw failed
        } finally {
            if (!ended) {
                handle.stopListening()
                withContext(NonCancellable) { runCatching { handle.cancel() } }
            }
        }
    }

    /** Stops the turn at the computer; [updates] still ends with its (cancelled) outcome. */
    suspend fun cancel(): CancelPhase = handle.cancel()
}

private fun collecting(channel: Channel<TurnUpdate>) = object : TurnListener {
    override fun onEvent(event: TurnEvent) {
        channel.trySend(TurnUpdate.Event(event))
    }

    override fun onEnd(end: TurnEnd) {
        when (end) {
            is TurnEnd.Finished -> {
                channel.trySend(TurnUpdate.Finished(end.outcome))
                channel.close()
            }
            is TurnEnd.Failed -> channel.close(TurnFailedException(end.message, end.code))
        }
    }
}

/** Sends [prompt]; returns once the computer took the turn. */
suspend fun Connection.turn(prompt: Prompt): RunningTurn {
    val channel = Channel<TurnUpdate>(Channel.UNLIMITED)
    return RunningTurn(startTurn(prompt, collecting(channel)), channel)
}

/** Follows a turn already started, from after [afterSeq]. */
suspend fun Connection.follow(runId: String, afterSeq: ULong = 0uL): RunningTurn {
    val channel = Channel<TurnUpdate>(Channel.UNLIMITED)
    return RunningTurn(attach(runId, afterSeq, collecting(channel)), channel)
}

/** A typed prompt on the default conversation. */
fun prompt(text: String, sessionKey: String? = null, images: List<Image> = emptyList(), voice: Boolean = false) =
    Prompt(text, sessionKey, voice, images, null)

/** Sends [prompt] and streams its updates; cancelling the collector cancels the turn at the computer. */
fun Connection.ask(prompt: Prompt): Flow<TurnUpdate> = flow {
    val turn = turn(prompt)
    turn.updates.collect { emit(it) }
}

/** The link state now, then every change, until the state is final or the collector stops. */
fun Connection.linkStates(): Flow<LinkState> = callbackFlow {
    val handle = observeLink(object : LinkListener {
        override fun onLink(state: LinkState) {
            trySend(state)
            if (state is LinkState.Unpaired || state is LinkState.Stopped) channel.close()
        }
    })
    awaitClose { handle.cancel() }
}.buffer(Channel.UNLIMITED)

/** What mDNS finds on the local network, until the collector stops. */
sealed interface Discovered {
    data class Found(val computer: DiscoveredComputer) : Discovered
    data class Lost(val instance: String) : Discovered
}

fun discover(interfaces: List<String> = emptyList(), port: UShort? = null): Flow<Discovered> = callbackFlow {
    val handle = discoverComputers(interfaces, port, object : DiscoveryListener {
        override fun onFound(computer: DiscoveredComputer) {
            trySend(Discovered.Found(computer))
        }

        override fun onLost(instance: String) {
            trySend(Discovered.Lost(instance))
        }
    })
    awaitClose { handle.cancel() }
}.buffer(Channel.UNLIMITED)

<?php

namespace Resonance\Laravel\Events;

/** client_event: a client sent a client-* event (whisper) on a private or presence channel. */
class ClientEventReceived extends WebhookEvent
{
    /** @var string e.g. "client-typing" */
    public $event;
    /** @var mixed the data as sent (a string, usually JSON) */
    public $data;
    /** @var string|null */
    public $socketId;
    /** @var string|null presence channels: the sender's user id */
    public $userId;

    protected function fill(array $payload): void
    {
        $this->event = (string) ($payload['event'] ?? '');
        $this->data = $payload['data'] ?? null;
        $this->socketId = isset($payload['socket_id']) ? (string) $payload['socket_id'] : null;
        $this->userId = isset($payload['user_id']) ? (string) $payload['user_id'] : null;
    }

    /** The data decoded from JSON (null when it is not JSON). */
    public function json()
    {
        return is_string($this->data) ? json_decode($this->data, true) : $this->data;
    }
}

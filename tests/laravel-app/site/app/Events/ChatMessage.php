<?php

namespace App\Events;

use App\Models\User;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Broadcasting\PresenceChannel;
use Illuminate\Contracts\Broadcasting\ShouldBroadcast;
use Illuminate\Foundation\Events\Dispatchable;

/** A message to everyone in presence-chat.{room}. */
class ChatMessage implements ShouldBroadcast
{
    use Dispatchable, InteractsWithSockets;

    public $room;
    public $user;
    public $text;

    public function __construct(string $room, User $user, string $text)
    {
        $this->room = $room;
        $this->user = ['id' => $user->id, 'name' => $user->name];
        $this->text = $text;
    }

    public function broadcastOn()
    {
        return new PresenceChannel('chat.'.$this->room);
    }
}

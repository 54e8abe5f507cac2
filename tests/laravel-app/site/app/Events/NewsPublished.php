<?php

namespace App\Events;

use Illuminate\Broadcasting\Channel;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Contracts\Broadcasting\ShouldBroadcast;
use Illuminate\Foundation\Events\Dispatchable;

/** A public event with a custom name (broadcastAs) and payload (broadcastWith). */
class NewsPublished implements ShouldBroadcast
{
    use Dispatchable, InteractsWithSockets;

    public $headline;

    public function __construct(string $headline)
    {
        $this->headline = $headline;
    }

    public function broadcastOn()
    {
        return new Channel('news');
    }

    public function broadcastAs()
    {
        return 'news.published';
    }

    public function broadcastWith()
    {
        return ['headline' => $this->headline, 'length' => strlen($this->headline)];
    }
}

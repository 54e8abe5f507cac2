<?php

namespace App\Events;

use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Broadcasting\PrivateChannel;
use Illuminate\Contracts\Broadcasting\ShouldBroadcast;
use Illuminate\Foundation\Events\Dispatchable;

/** Broadcast on the owner's private-orders.{userId} channel. */
class OrderShipped implements ShouldBroadcast
{
    use Dispatchable, InteractsWithSockets;

    public $orderId;
    public $ownerId;

    public function __construct(int $ownerId, int $orderId)
    {
        $this->ownerId = $ownerId;
        $this->orderId = $orderId;
    }

    public function broadcastOn()
    {
        return new PrivateChannel('orders.'.$this->ownerId);
    }
}

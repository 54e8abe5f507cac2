<?php

namespace App\Notifications;

use Illuminate\Bus\Queueable;
use Illuminate\Notifications\Messages\BroadcastMessage;
use Illuminate\Notifications\Notification;

/** A broadcast notification: Echo's .notification() on private-App.Models.User.{id}. */
class InvoicePaid extends Notification
{
    use Queueable;

    public $amount;

    public function __construct(int $amount)
    {
        $this->amount = $amount;
    }

    public function via($notifiable)
    {
        return ['broadcast'];
    }

    public function toBroadcast($notifiable)
    {
        return new BroadcastMessage(['amount' => $this->amount, 'for' => $notifiable->name]);
    }
}

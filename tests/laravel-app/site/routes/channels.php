<?php

use Illuminate\Support\Facades\Broadcast;

// Broadcast notifications (Echo's .notification()).
Broadcast::channel('App.Models.User.{id}', function ($user, $id) {
    return (int) $user->id === (int) $id;
});

// Each user's own orders.
Broadcast::channel('orders.{userId}', function ($user, $userId) {
    return (int) $user->id === (int) $userId;
});

// Chat rooms (presence); "staff" is for admins only.
Broadcast::channel('chat.{room}', function ($user, $room) {
    if ($room === 'staff' && ! $user->admin) {
        return false;
    }

    return ['id' => $user->id, 'name' => $user->name];
});

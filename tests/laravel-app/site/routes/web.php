<?php

use App\Events\ChatMessage;
use App\Events\NewsPublished;
use App\Events\OrderShipped;
use App\Models\User;
use App\Notifications\InvoicePaid;
use Resonance\Laravel\Facades\Socket;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Auth;
use Illuminate\Support\Facades\Cache;
use Illuminate\Support\Facades\Route;

// A JSON front end: GET /login hands out the session, XSRF-TOKEN cookies and
// the CSRF token (what a Blade page puts in <meta name="csrf-token">).
Route::get('/login', function () {
    return response()->json(['csrf_token' => csrf_token(), 'user' => Auth::user()]);
})->name('login');

Route::post('/login', function (Request $request) {
    $credentials = $request->validate(['email' => 'required|email', 'password' => 'required']);
    if (! Auth::attempt($credentials)) {
        return response()->json(['message' => 'These credentials do not match our records.'], 422);
    }
    $request->session()->regenerate();

    return response()->json(['user' => Auth::user()->toArray(), 'csrf_token' => csrf_token()]);
});

Route::post('/logout', function (Request $request) {
    Auth::logout();
    $request->session()->invalidate();
    $request->session()->regenerateToken();

    return response()->json(['ok' => true]);
});

Route::post('/news', function (Request $request) {
    event(new NewsPublished((string) $request->input('headline')));

    return response()->json(['ok' => true]);
});

// Online status kept by the MemberAdded / MemberRemoved webhook listeners.
Route::get('/users/{id}/online', function ($id) {
    return response()->json(['online' => (bool) Cache::get('online.'.$id, false)]);
});

Route::middleware('auth')->group(function () {
    // Socket:: from a controller: Resonance's signed HTTP API (admins only).
    Route::post('/sockets/{action}', function (Request $request, $action) {
        abort_unless($request->user()->admin, 403);
        $data = json_decode((string) $request->input('data', 'null'), true);
        switch ($action) {
            case 'broadcast':
                Socket::broadcast($request->input('room'), $data, $request->input('except'));
                break;
            case 'to-user':
                Socket::toUser($request->input('user_id'), $data);
                break;
            case 'emit':
                Socket::emit($request->input('socket_id'), $data);
                break;
            case 'join':
                Socket::join($request->input('socket_id'), $request->input('room'));
                break;
            case 'leave':
                Socket::leave($request->input('socket_id'), $request->input('room'));
                break;
            case 'close':
                Socket::close($request->input('socket_id'), (int) $request->input('code', 4000), (string) $request->input('reason', ''));
                break;
            default:
                abort(404);
        }

        return response()->json(['ok' => true]);
    });

    // The chat page (README: Laravel package → sockets), connecting to Resonance's
    // /chat-rooms/{id} route handled by App\Sockets\ChatSocket.
    Route::get('/chat/{room}', function (Request $request, $room) {
        $socketUrl = preg_replace('#^http#', 'ws', (string) env('RESONANCE_PUBLIC_URL', config('resonance.api_url'))).'/chat-rooms/'.rawurlencode($room);

        return view('chat', ['room' => $room, 'user' => $request->user(), 'socketUrl' => $socketUrl]);
    });

    Route::get('/user', function (Request $request) {
        return response()->json($request->user()->toArray());
    });

    // toOthers(): the X-Socket-ID header of this request is left out.
    Route::post('/orders/{order}/ship', function (Request $request, $order) {
        broadcast(new OrderShipped($request->user()->id, (int) $order))->toOthers();

        return response()->json(['ok' => true, 'socket' => $request->header('X-Socket-ID')]);
    });

    Route::post('/orders/{order}/ship-to-all', function (Request $request, $order) {
        broadcast(new OrderShipped($request->user()->id, (int) $order));

        return response()->json(['ok' => true]);
    });

    Route::post('/chat/{room}', function (Request $request, $room) {
        broadcast(new ChatMessage($room, $request->user(), (string) $request->input('text')))->toOthers();

        return response()->json(['ok' => true]);
    });

    Route::post('/users/{id}/invoice', function (Request $request, $id) {
        $user = User::find($id);
        abort_if($user === null, 404);
        $user->notify(new InvoicePaid((int) $request->input('amount')));

        return response()->json(['ok' => true]);
    });
});

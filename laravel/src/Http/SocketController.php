<?php

namespace Resonance\Laravel\Http;

use Illuminate\Auth\Access\AuthorizationException;
use Illuminate\Auth\AuthenticationException;
use Illuminate\Contracts\Container\Container;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;
use Resonance\Laravel\SocketManager;
use Resonance\Laravel\Sockets\Connection;
use Resonance\Laravel\Sockets\SessionUser;
use Resonance\Laravel\Sockets\SocketHandler;
use Resonance\Laravel\Sockets\SocketRoute;
use Resonance\Laravel\Support\Signature;
use Symfony\Component\HttpKernel\Exception\HttpExceptionInterface;
use Throwable;

/**
 * The handler endpoint Resonance posts socket events to (connect / message / close). Only
 * calls signed with the app secret (X-Resonance-Signature) are served.
 */
class SocketController
{
    private $app;
    private $sockets;

    public function __construct(Container $app, SocketManager $sockets)
    {
        $this->app = $app;
        $this->sockets = $sockets;
    }

    public function __invoke(Request $request): JsonResponse
    {
        $body = $request->getContent();
        if (! Signature::verifyBody(config('resonance.secret'), $body, $request->header('X-Resonance-Signature'))) {
            return $this->error(401, 'invalid or missing X-Resonance-Signature');
        }
        $call = json_decode($body, true);
        if (! is_array($call) || ! isset($call['event'], $call['socket_id']) || ! is_string($call['socket_id'])) {
            return $this->error(400, 'the body is not a Resonance handler call');
        }
        $route = $this->findRoute($request, $call);
        if ($route === null) {
            return $this->error(404, 'no socket route for '.($request->query('route') ?: ($call['path'] ?? '?')).' in routes/sockets.php');
        }
        $conn = new Connection(
            $call['socket_id'],
            (string) ($call['path'] ?? ''),
            is_array($call['params'] ?? null) ? $call['params'] : [],
            is_array($call['query'] ?? null) ? $call['query'] : [],
            is_array($call['headers'] ?? null) ? $call['headers'] : [],
            isset($call['user_id']) ? (string) $call['user_id'] : null,
            SessionUser::resolver($this->app, $request, config('resonance.sockets.guard'))
        );
        $forwarded = (string) $request->header('X-Forwarded-For', '');
        $conn->setIp($forwarded === '' ? null : trim(explode(',', $forwarded)[0]));
        $handler = $this->app->make($route->handler);
        if (! $handler instanceof SocketHandler) {
            return $this->error(500, $route->handler.' does not extend '.SocketHandler::class);
        }

        switch ($call['event']) {
            case 'connect':
                return $this->connect($handler, $conn);
            case 'message':
                $binary = ! empty($call['binary']);
                $data = (string) ($call['data'] ?? '');
                if ($binary) {
                    $decoded = base64_decode($data, true);
                    if ($decoded === false) {
                        return $this->error(400, 'binary data is not base64');
                    }
                    $data = $decoded;
                }
                $conn->markBinary($binary);
                $this->sockets->handling($conn, function () use ($handler, $conn, $data) {
                    $handler->onMessage($conn, $data);
                });

                return $this->answer(['actions' => $conn->actions()]);
            case 'close':
                // Resonance ignores the answer to a close (the socket is gone): Socket:: calls
                // made here go through the signed API instead of becoming actions.
                $handler->onClose($conn, (int) ($call['code'] ?? 1005), (string) ($call['reason'] ?? ''));

                return $this->answer(['actions' => []]);
            default:
                return $this->error(400, 'unknown event '.json_encode($call['event']));
        }
    }

    private function connect(SocketHandler $handler, Connection $conn): JsonResponse
    {
        try {
            $result = $this->sockets->handling($conn, function () use ($handler, $conn) {
                return $handler->onOpen($conn);
            });
        } catch (AuthenticationException $e) {
            return $this->error(401, $e->getMessage() ?: 'Unauthenticated.');
        } catch (AuthorizationException $e) {
            return $this->error(403, $e->getMessage() ?: 'This action is unauthorized.');
        } catch (HttpExceptionInterface $e) {
            return $this->error($e->getStatusCode(), $e->getMessage());
        }
        if ($result === false) {
            return $this->error(403, 'refused by '.get_class($handler).'::onOpen');
        }
        $userId = $conn->userId();
        if (! $conn->hasExplicitUserId()) {
            $user = $conn->user();
            $userId = $user === null ? null : (string) $user->getAuthIdentifier();
        }
        $answer = ['actions' => $conn->actions()];
        if ($userId !== null) {
            $answer['user_id'] = $userId;
        }

        return $this->answer($answer);
    }

    private function findRoute(Request $request, array $call): ?SocketRoute
    {
        $path = $request->query('route');
        if (is_string($path) && $path !== '') {
            return $this->sockets->findRoute($path);
        }
        // A handler URL without ?route=: the only route, if there is just one.
        $routes = $this->sockets->routes();

        return count($routes) === 1 ? $routes[0] : null;
    }

    private function answer(array $answer): JsonResponse
    {
        return new JsonResponse($answer, 200, [], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    }

    private function error(int $status, string $message): JsonResponse
    {
        return new JsonResponse(['message' => $message], $status, [], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    }
}

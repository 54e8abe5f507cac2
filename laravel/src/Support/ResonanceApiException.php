<?php

namespace Resonance\Laravel\Support;

use RuntimeException;

/** A call to Resonance's HTTP API failed: unreachable, or answered with an error status. */
class ResonanceApiException extends RuntimeException
{
    /** @var int HTTP status (0 when Resonance could not be reached) */
    public $status;

    public function __construct(string $message, int $status = 0)
    {
        parent::__construct($message, $status);
        $this->status = $status;
    }
}
